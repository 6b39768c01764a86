"""A trained adapter on disk, and the checks that keep it from ranking with the wrong model.

An adapter directory holds ``adapter.gguf`` (what llama.cpp loads) and ``manifest.json``: the
base model's name and sha256, the catalog it was trained on (name and items fingerprint), the
prompt template's hash, and the training settings and results. A LoRA trained for one base model
or one prompt is noise on another, so every mismatch is an :class:`AdapterError`; the ranking
then falls back to retrieval and the result says why (see ``LocalLLM``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mediarec.errors import MediarecError

MANIFEST = "manifest.json"
ADAPTER_FILE = "adapter.gguf"
FORMAT = 1


class AdapterError(MediarecError):
    """A missing, corrupt or mismatched adapter."""


class AdapterManifest(BaseModel):
    format: int = FORMAT
    base_model: str  # the registry name (or file name) the adapter was trained on
    base_sha256: str
    architecture: str
    catalog: str
    items_fingerprint: str
    prompt_hash: str
    adapter_sha256: str = ""
    settings: dict[str, Any] = {}
    results: dict[str, Any] = {}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(directory: str | Path) -> AdapterManifest:
    d = Path(directory).expanduser()
    if not d.is_dir():
        raise AdapterError(f"adapter directory {d} does not exist")
    path = d / MANIFEST
    try:
        return AdapterManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AdapterError(f"{path} is missing: not an adapter written by `mediarec train`") from None
    except (ValidationError, ValueError, UnicodeDecodeError) as e:
        raise AdapterError(f"{path} is corrupt ({str(e).splitlines()[0]})") from None


def write_manifest(directory: Path, manifest: AdapterManifest) -> None:
    from mediarec.infra.atomic import atomic_write_text

    atomic_write_text(directory / MANIFEST, json.dumps(manifest.model_dump(), indent=2) + "\n")


def verify(directory: str | Path, base_sha256: str, catalog: str | None = None,
           prompt: str | None = None) -> tuple[Path, AdapterManifest]:
    """The adapter file to load, after checking it belongs to this base model, catalog and prompt.

    The catalog is checked by name: a catalog that grew since (new items or interactions) keeps its
    adapter, which knows the catalog's taste, not a fixed item list (``items_fingerprint`` says
    which version it was trained on)."""
    d = Path(directory).expanduser()
    m = read_manifest(d)
    if m.format != FORMAT:
        raise AdapterError(f"adapter {d}: format {m.format}, this mediarec reads {FORMAT}; retrain it")
    if m.base_sha256 != base_sha256:
        raise AdapterError(f"adapter {d} was trained on {m.base_model} (sha256 {m.base_sha256[:12]}…), "
                           f"not on this model (sha256 {base_sha256[:12]}…)")
    if catalog is not None and m.catalog != catalog:
        raise AdapterError(f"adapter {d} was trained on catalog {m.catalog!r}, not {catalog!r}; "
                           f"train one for this catalog (`mediarec train --dataset {catalog}`)")
    if prompt is not None and m.prompt_hash != prompt:
        raise AdapterError(f"adapter {d} was trained with another scoring prompt; retrain it")
    f = d / ADAPTER_FILE
    if not f.is_file():
        raise AdapterError(f"adapter {d}: {ADAPTER_FILE} is missing")
    if m.adapter_sha256 and sha256_file(f) != m.adapter_sha256:
        raise AdapterError(f"adapter {d}: {ADAPTER_FILE} does not match its manifest (corrupt or replaced)")
    return f, m
