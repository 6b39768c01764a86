"""One BLAS thread for loops of many small products (per-user scoring).

A matrix-vector product over a catalogue takes microseconds on one thread; with OpenBLAS's pool
it waits for the other threads, and on 2 shared cores (other processes, llama.cpp, ONNX Runtime)
that wait grew to ~8 ms per product, 400× slower (measured while training the learned stage).
Large single products (EASE's inversion) keep every thread: only the loops are wrapped.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
