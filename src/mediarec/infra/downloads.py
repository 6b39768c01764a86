"""Downloads: open a URL or a local file, stream it into place, and never leave a half file.

Datasets (:mod:`mediarec.catalog.fetch`) and model weights (:mod:`mediarec.llm.weights`) both
fetch through :func:`download`: the bytes go to a temporary ``.<name>.<random>.part`` file beside
the destination while they are hashed, counted and shown with :func:`mediarec.infra.progress.transfer`;
the size and sha256 are checked, and only then is the file renamed into place. A failure, a
mismatch or an interrupt removes the ``.part`` file, so the real name only ever holds a verified file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from mediarec.errors import MediarecError
from mediarec.infra.atomic import atomic_open
from mediarec.infra.progress import transfer

BLOCK = 1 << 20


class DownloadMismatch(MediarecError):
    """What arrived is not what was expected: ``what`` is "size" or "sha256"."""

    def __init__(self, what: str, expected: int | str, actual: int | str):
        self.what, self.expected, self.actual = what, expected, actual
        unit = " bytes" if what == "size" else ""
        super().__init__(f"got {actual}{unit}, expected {expected}{unit}" if what == "size"
                         else f"sha256 {actual}, expected {expected}")


def local_path(src: str) -> Path | None:
    """The local path of a ``file://`` URL or a plain path; None for a remote URL."""
    parsed = urllib.parse.urlparse(src)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):  # C:\... on Windows
        return Path(src).expanduser()
    return None


def open_url(url: str, timeout: float, read_timeout: float | None = None) -> BinaryIO:
    """``urlopen`` with ``timeout`` to connect and, once connected, ``read_timeout`` between bytes."""
    req = urllib.request.Request(url, headers={"User-Agent": "mediarec"})
    resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http(s) URLs only reach here)
    if read_timeout is not None:
        # urllib has one timeout for connect and reads; relax it for the body where the socket is reachable.
        with contextlib.suppress(AttributeError, OSError):
            resp.fp.raw._sock.settimeout(max(timeout, read_timeout))
    return resp


def open_source(src: str, timeout: float) -> tuple[BinaryIO, int | None]:
    """A URL or local path opened for reading, and its size in bytes when known."""
    local = local_path(src)
    if local is not None:
        return open(local, "rb"), local.stat().st_size
    resp = open_url(src, timeout)
    return resp, int(resp.headers.get("Content-Length") or 0) or None


class Sink:
    """Where a download's bytes go: the ``.part`` file, hashed and counted, refusing more bytes
    than expected (a source that sends too much is wrong, not just long)."""

    def __init__(self, fh: BinaryIO, expected_size: int | None, advance: Callable[[int], None]):
        self.fh, self.expected_size, self.advance = fh, expected_size, advance
        self.sha = hashlib.sha256()
        self.n = 0

    def write(self, data: bytes) -> None:
        self.n += len(data)
        if self.expected_size is not None and self.n > self.expected_size:
            raise DownloadMismatch("size", self.expected_size, f"more than {self.expected_size}")
        self.fh.write(data)
        self.sha.update(data)
        self.advance(len(data))

    def copy_from(self, src: BinaryIO) -> None:
        while block := src.read(BLOCK):
            self.write(block)


@contextlib.contextmanager
def download(dest: str | Path, *, label: str, progress: bool, total: int | None = None,
             size: int | None = None, sha256: str | None = None,
             check: Callable[[Path], None] | None = None) -> Iterator[Sink]:
    """Yields a :class:`Sink`; when the block ends, the bytes written are checked (``size``,
    ``sha256``, then ``check(part_file)``) and moved to ``dest``.

    ``total``: the size shown on the progress bar (default ``size``). A check that fails raises
    (:class:`DownloadMismatch`, or whatever ``check`` raises) and ``dest`` is left as it was.
    """
    dest = Path(dest)
    with atomic_open(dest, "wb", suffix=".part") as fh, \
            transfer(progress, label, total if total is not None else size) as advance:
        sink = Sink(fh, size, advance)
        yield sink
        if size is not None and sink.n != size:
            raise DownloadMismatch("size", size, sink.n)
        actual = sink.sha.hexdigest()
        if sha256 is not None and actual != sha256:
            raise DownloadMismatch("sha256", sha256, actual)
        if check is not None:
            fh.flush()
            check(Path(fh.name))
