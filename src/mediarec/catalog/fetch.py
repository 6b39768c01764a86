"""Fetching a registered dataset from its publisher (or a given URL, zip or folder) into the data
folder: download, check (sha256 where pinned, a readable zip), unpack, and only then put it in place."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from mediarec.catalog.loaders.demo import demo_dir
from mediarec.catalog.registry import DatasetInfo, data_folder, resolve_dataset_name
from mediarec.catalog.validate import PathLike
from mediarec.errors import CatalogError
from mediarec.infra.downloads import DownloadMismatch, download, local_path, open_source

DOWNLOAD_TIMEOUT = 60.0  # seconds to connect to the publisher


def _check_zip(path: Path, src: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as e:
        raise CatalogError(f"not a valid zip archive ({e}); the download is truncated or "
                           f"corrupt, fetch it again", src) from None
    if bad is not None:
        raise CatalogError(f"corrupt archive (bad CRC in {bad}); fetch it again", src)


def _download_archive(src: str, archive: Path, info: DatasetInfo, progress: bool | None) -> str:
    """``src`` (URL or local zip) checked and saved as ``archive``; returns its sha256."""
    local = local_path(src)
    if local is not None and not local.is_file():
        raise CatalogError("not found (expected the dataset's zip archive or folder)", local)
    try:
        stream, total = open_source(src, DOWNLOAD_TIMEOUT)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CatalogError(f"cannot download {src}: {reason}; download it by hand and pass it with "
                           f"--url or --data-dir") from None
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        with stream, download(archive, label=info.name, progress=progress, total=total, sha256=info.sha256,
                              check=lambda part: _check_zip(part, src)) as sink:
            sink.copy_from(stream)
    except DownloadMismatch as e:
        raise CatalogError(f"sha256 mismatch: expected {e.expected}, got {e.actual}; the download is "
                           f"corrupt or the publisher changed the file", src) from None
    except (urllib.error.URLError, OSError) as e:
        raise CatalogError(f"download of {src} failed: {getattr(e, 'reason', None) or e}") from None
    return sink.sha.hexdigest()


def _safe_extract(zf: zipfile.ZipFile, target: Path, where: str) -> None:
    root = target.resolve()
    for m in zf.infolist():
        dest = (target / m.filename).resolve()
        if m.filename.startswith(("/", "\\")) or (dest != root and root not in dest.parents):
            raise CatalogError(f"archive member {m.filename!r} would unpack outside the folder", where)
    zf.extractall(target)


def _replace_dir(new: Path, final: Path) -> None:
    """Move ``new`` to ``final``, replacing an existing ``final`` (old one removed afterwards)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{int(time.time())}")
        os.replace(final, old)
    try:
        os.replace(new, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _record_source(folder: Path, info: DatasetInfo, src: str, digest: str | None) -> None:
    rec = {"dataset": info.name, "source": src, "archive": info.archive, "sha256": digest,
           "pinned": bool(info.sha256), "fetched_at": datetime.now(timezone.utc).isoformat()}
    try:
        (folder / ".mediarec-source.json").write_text(json.dumps(rec, indent=2) + "\n")
    except OSError:
        pass


def fetch_dataset(name: str, dest_dir: PathLike | None = None, url: str | None = None, *,
                  progress: bool | None = None) -> Path:
    """Download dataset ``name`` from its publisher (or ``url``) and unpack it into
    ``dest_dir/<folder>`` (default: the settings' data dir); return that folder.

    ``url`` may be an http(s) URL, a ``file://`` URL or a local path to the zip archive; a local
    folder is copied as is (or, if it holds the dataset's zip archive, that archive is used). The
    archive is downloaded to a temporary file beside its destination, its sha256 is checked where
    pinned (else printed and recorded in ``<folder>/.mediarec-source.json``), it is tested, then
    renamed into place and unpacked into a temporary folder that is renamed into place: a failed
    or corrupt download leaves nothing behind. ``progress``: show a rich progress bar (default:
    when stderr is a terminal).
    """
    info = resolve_dataset_name(name)
    if info.folder is None:
        return Path(str(demo_dir()))
    dest = data_folder(dest_dir)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CatalogError(f"cannot create the data folder: {e.strerror or e}", dest) from None
    final = dest / info.folder
    src = url or info.url
    assert src is not None and info.archive is not None

    local = local_path(src)
    if local is not None and local.is_dir():
        if (local / info.archive).is_file():
            src = str(local / info.archive)
        else:
            if not info.present(local):
                raise CatalogError(f"this folder does not hold the {info.name} files", local)
            if final.exists() and final.resolve() == local.resolve():
                return final
            tmpdir = Path(tempfile.mkdtemp(prefix=f".{info.folder}.", suffix=".part", dir=dest))
            try:
                shutil.copytree(local, tmpdir / info.folder)
                _record_source(tmpdir / info.folder, info, str(local), None)
                _replace_dir(tmpdir / info.folder, final)
            except OSError as e:
                raise CatalogError(f"cannot copy {local}: {e}", final) from None
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
            return final

    archive = dest / info.archive
    digest = _download_archive(src, archive, info, progress)

    tmpdir = Path(tempfile.mkdtemp(prefix=f".{info.folder}.", suffix=".part", dir=dest))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                _safe_extract(zf, tmpdir, str(archive))
        except (zipfile.BadZipFile, EOFError, ValueError, OSError) as e:
            raise CatalogError(f"cannot unpack ({e})", archive) from None
        entries = [p for p in tmpdir.iterdir() if p.name != "__MACOSX"]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmpdir
        if not info.present(root):
            raise CatalogError(f"the archive does not contain the {info.name} files", archive)
        _record_source(root, info, src, digest)
        if root == tmpdir:
            _replace_dir(tmpdir, final)
        else:
            _replace_dir(root, final)
    except BaseException:
        archive.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    if not info.sha256:
        print(f"{info.name}: sha256 of {info.archive} is {digest} (not pinned; recorded in "
              f"{final / '.mediarec-source.json'})", file=sys.stderr)
    return final
