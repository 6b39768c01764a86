"""The LLM fusion weight that validation chose, per catalog and model, under ``$MEDIAREC_HOME/tuned/``.

``mediarec eval --systems ...,llm`` picks the weight between the LLM's order and retrieval on
validation users (never test) and stores it here; ``recommend`` and ``chat`` use it for the same
catalog (matched by fingerprint) and model, and say so (``RecommendationResult.settings``). The
collaborative side's choice (``mediarec tune``) lives beside it, see :mod:`mediarec.index.tuning`.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from mediarec.catalog import Catalog
from mediarec.index.tuning import tuned_path
from mediarec.infra.atomic import atomic_write_text

log = logging.getLogger(__name__)


def llm_weight_path(catalog_name: str, home: Path | None = None) -> Path:
    plain = tuned_path(catalog_name, home)
    return plain.with_name(f"{plain.stem}.llm-weight.json")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and isinstance(data.get("models"), dict) else {"models": {}}
    except FileNotFoundError:
        return {"models": {}}
    except (OSError, ValueError) as e:
        log.warning("ignoring the stored LLM weights in %s: %s", path, e)
        return {"models": {}}


def store_llm_weight(catalog: Catalog, fingerprints: Sequence[str], llm_spec: str, weight: float,
                     validation_ndcg: Mapping[float, float], validation_users: int,
                     home: Path | None = None, history: int | None = None) -> Path:
    """Record ``weight`` (and the prompts' ``history`` cut chosen with it) for ``llm_spec`` on
    ``catalog`` and the training catalogs it was chosen on."""
    path = llm_weight_path(catalog.name, home)
    data = _read(path)
    data["catalog"] = catalog.name
    data["models"][llm_spec] = {
        "llm_weight": weight, "fingerprints": list(fingerprints), "validation_users": validation_users,
        "validation_ndcg@10_by_weight": {str(w): v for w, v in validation_ndcg.items()},
        **({"history": history} if history else {}),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return path


def stored_llm_weight(catalog: Catalog, llm_spec: str, home: Path | None = None) -> tuple[float, Path] | None:
    """(weight, file) chosen for this very catalog and model, or None: the default serves."""
    hit = stored_llm_choice(catalog, llm_spec, home)
    return (hit[0], hit[2]) if hit else None


def stored_llm_choice(catalog: Catalog, llm_spec: str,
                      home: Path | None = None) -> tuple[float, int | None, Path] | None:
    """(weight, history cut or None, file) chosen for this very catalog and model, or None."""
    path = llm_weight_path(catalog.name, home)
    entry = _read(path)["models"].get(llm_spec)
    try:
        if entry and catalog.fingerprint() in entry["fingerprints"]:
            w = float(entry["llm_weight"])
            h = entry.get("history")
            h = int(h) if h is not None and int(h) >= 1 else None
            if 0.0 <= w <= 1.0:
                return w, h, path
    except (KeyError, TypeError, ValueError) as e:
        log.warning("ignoring the stored LLM weight for %s in %s: %s", llm_spec, path, e)
    return None
