"""The collaborative hyper-parameters chosen for a catalog on validation users, as stored.

``mediarec tune`` (:mod:`mediarec.eval.tuning`) writes ``$MEDIAREC_HOME/tuned/<catalog>.json`` with
the fingerprints of the catalog and of its leave-last-out training parts; :func:`stored_choice`
reads it back for exactly those catalogs (:meth:`CollabSettings.for_catalog`), and for the catalogs
``mediarec add`` grew from them (:func:`carry_choice`); any other catalog keeps the defaults.
``mediarec index`` makes the choice itself where none is stored (:func:`mediarec.eval.tuning.auto_tune`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any


from mediarec.catalog.model import Catalog
from mediarec.config import get_settings
from mediarec.index.collab import (TUNED_FIELDS)
from mediarec.infra.paths import Layout, safe_file_name

log = logging.getLogger(__name__)

def tuned_path(catalog_name: str, home: Path | None = None, variant: str | None = None) -> Path:
    """``tuned/<catalog>.json``; ``tuned/<catalog>@<variant>.json`` for the same catalog as a
    protocol filters it (``mediarec tune --protocol llamarec``), so the two choices coexist."""
    return (Layout(home) if home else get_settings().layout).tuned_choice(catalog_name, variant)


def stored_choice(catalog: Catalog, home: Path | None = None) -> dict[str, Any] | None:
    """The tuned (λ, α, window, decay) stored for this very catalog (its fingerprint, or one of its
    training splits'), or None (no file, another catalog's, unreadable: the defaults serve, and an
    unreadable file is logged)."""
    plain = tuned_path(catalog.name, home)
    for path in [plain, *sorted(plain.parent.glob(f"{safe_file_name(catalog.name)}@*.json"))]:
        if not path.exists():
            continue
        try:
            data = json.loads(path.read_text())
            if catalog.fingerprint() in data["fingerprints"]:
                return {k: data["settings"][k] for k in (*TUNED_FIELDS, "strength") if k in data["settings"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("ignoring the tuned settings in %s: %s", path, e)
    return None


def carry_choice(old: Catalog, new: Catalog, home: Path | None = None) -> bool:
    """A catalog grown from ``old`` (``mediarec add``) keeps the choice made for ``old``: ``new``'s
    fingerprint joins the stored file's (the first three, the catalog and its training parts as
    tuned, and the latest 20 grown from it). False where ``old`` had no choice stored."""
    from mediarec.infra.atomic import atomic_write_text

    path = tuned_path(old.name, home)
    try:
        data = json.loads(path.read_text())
        fps = list(data["fingerprints"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if old.fingerprint() not in fps:
        return False
    if new.fingerprint() not in fps:
        data["fingerprints"] = fps[:3] + fps[3:][-20:] + [new.fingerprint()]
        atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return True
