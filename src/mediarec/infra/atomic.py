"""Atomic file writes: a reader (or a process killed mid-write) sees the old file or the new one.

Used for everything mediarec writes that a later run reads: evaluation reports, the LLM answer
cache, saved chat sessions, catalogs in the generic format, model verification stamps and
downloads. The new content goes to a temporary file beside the destination, which is renamed over
it only when the write finished; on any error the temporary file is removed. ``private=True``
makes the file owner-only (0o600) from creation; otherwise it is 0o644.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, private: bool = False, suffix: str = ".tmp",
                encoding: str | None = None, newline: str | None = None) -> Iterator[IO]:
    """An open temporary file that replaces ``path`` when the ``with`` block ends without error.

    Raise inside the block to abandon the write (a download that fails its checksum): ``path``
    is left as it was and the temporary file is gone.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=str(path.parent))
    try:
        os.fchmod(fd, 0o600 if private else 0o644)
        os.close(fd)
        with open(tmp, mode, encoding=encoding, newline=newline) as f:  # f.name: the temporary path
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, private: bool = False) -> Path:
    with atomic_open(path, "wb", private=private) as f:
        f.write(data)
    return Path(path).expanduser()


def atomic_write_text(path: str | Path, text: str, private: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), private=private)
