"""infra.downloads and infra.atomic: a download lands under its real name only once verified."""

from __future__ import annotations

import hashlib
import io
import stat

import pytest

from mediarec.infra.atomic import atomic_open, atomic_write_text
from mediarec.infra.downloads import DownloadMismatch, download, local_path, open_source

DATA = b"mediarec " * 1000
SHA = hashlib.sha256(DATA).hexdigest()


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_verified_download_moves_into_place(tmp_path):
    dest = tmp_path / "file.bin"
    with download(dest, label="t", progress=False, size=len(DATA), sha256=SHA) as sink:
        sink.copy_from(io.BytesIO(DATA))
    assert dest.read_bytes() == DATA and _names(tmp_path) == ["file.bin"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


@pytest.mark.parametrize("size, sha, what", [(len(DATA), "0" * 64, "sha256"), (len(DATA) + 1, SHA, "size"),
                                             (len(DATA) - 1, None, "size")])
def test_a_mismatch_leaves_the_old_file_and_no_part(tmp_path, size, sha, what):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"old")
    with pytest.raises(DownloadMismatch) as ei:
        with download(dest, label="t", progress=False, size=size, sha256=sha) as sink:
            sink.copy_from(io.BytesIO(DATA))
    assert ei.value.what == what
    assert dest.read_bytes() == b"old" and _names(tmp_path) == ["file.bin"]


def test_a_failed_check_or_an_interrupt_leaves_nothing(tmp_path):
    dest = tmp_path / "a.zip"

    def reject(part):
        assert part.name.endswith(".part") and part.read_bytes() == DATA  # flushed before the check
        raise ValueError("not a zip")

    with pytest.raises(ValueError):
        with download(dest, label="t", progress=False, check=reject) as sink:
            sink.write(DATA)
    with pytest.raises(KeyboardInterrupt):
        with download(dest, label="t", progress=False) as sink:
            sink.write(DATA[:10])
            raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_local_sources(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(DATA)
    assert local_path(str(f)) == f and local_path(f.as_uri()) == f and local_path("https://example.org/x") is None
    stream, total = open_source(f.as_uri(), timeout=1)
    with stream:
        assert total == len(DATA) and stream.read() == DATA


def test_atomic_open_private_and_abandoned(tmp_path):
    p = atomic_write_text(tmp_path / "secret.json", "{}", private=True)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    with pytest.raises(RuntimeError):
        with atomic_open(tmp_path / "secret.json", "w", encoding="utf-8") as fh:
            fh.write("half")
            raise RuntimeError
    assert p.read_text() == "{}" and _names(tmp_path) == ["secret.json"]
