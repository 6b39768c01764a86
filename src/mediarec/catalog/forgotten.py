"""The people asked to be forgotten, as salted sha256 digests (``$MEDIAREC_HOME/forgotten.json``).

Every catalog load leaves their interactions out (:func:`drop_forgotten`), so no index or model sees
them again; ``mediarec forget`` (:mod:`mediarec.app.forget`) adds to the list and deletes what was
built with them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

from mediarec.catalog.model import Catalog
from mediarec.config import get_settings
from mediarec.infra.atomic import atomic_write_text
from mediarec.infra.paths import Layout



def home_or_default(home: Path | None) -> Path:
    return Path(home) if home is not None else get_settings().home


def _digest(salt: str, user: str) -> str:
    return hashlib.sha256(f"{salt}\t{user}".encode()).hexdigest()


def _read(home: Path) -> tuple[str | None, set[str]]:
    path = Layout(home).forgotten
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return str(data["salt"]), set(data["users"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, set()


def is_forgotten(user: str, home: Path | None = None) -> bool:
    salt, digests = _read(home_or_default(home))
    return salt is not None and _digest(salt, str(user)) in digests


def remember_forgotten(user: str, home: Path | None = None) -> Path:
    """Add ``user`` (as a salted digest) to the people every load leaves out."""
    home = home_or_default(home)
    salt, digests = _read(home)
    salt = salt or secrets.token_hex(16)
    digests.add(_digest(salt, str(user)))
    return atomic_write_text(Layout(home).forgotten, json.dumps({"salt": salt, "users": sorted(digests)}) + "\n",
                             private=True)


def drop_forgotten(catalog: Catalog, home: Path | None = None) -> Catalog:
    """``catalog`` without the interactions of forgotten people (itself when there are none)."""
    salt, digests = _read(home_or_default(home))
    if salt is None or not digests:
        return catalog
    gone = {u for u in catalog.by_user if _digest(salt, u) in digests}
    if not gone:
        return catalog
    return catalog.replace(interactions=[x for x in catalog.interactions if x.user not in gone])
