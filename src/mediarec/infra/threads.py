"""One BLAS thread for loops of many small products (per-user scoring).

A matrix-vector product over a catalogue takes microseconds on one thread; with OpenBLAS's pool
it waits for the other threads, and on 2 shared cores (other processes, llama.cpp, ONNX Runtime)
that wait grew to ~8 ms per product, 400× slower (measured while training the learned stage).
Large single products (EASE's inversion) keep every thread: only the loops are wrapped.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator

_controller: tuple[int, Any] | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    # One controller while no module is imported: building one (``threadpool_limits``) re-reads
    # /proc/self/maps to find the loaded libraries, ~0.7 ms of CPU, which every served request paid.
    # A new import may bring a new BLAS, so the controller is rebuilt then.
    global _controller
    from threadpoolctl import ThreadpoolController

    if _controller is None or _controller[0] != len(sys.modules):
        _controller = (len(sys.modules), ThreadpoolController())
    with _controller[1].limit(limits=1, user_api="blas"):
        yield
