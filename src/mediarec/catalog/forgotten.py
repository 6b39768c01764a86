"""The people asked to be forgotten, per catalog, as salted sha256 digests (``$MEDIAREC_HOME/forgotten.json``).

A user id names a person only within one catalog (the demo's ``u02`` is not your catalog's ``u02``),
so the list is kept per catalog: ``mediarec forget --dataset NAME --user ID`` adds the digest under
``NAME``; ``--all-catalogs`` adds it under ``*``, which every catalog honours (a catalog's own entry
wins). Every load of that catalog leaves their interactions out (:func:`drop_forgotten`), so no
index or model sees them again; :mod:`mediarec.app.forget` deletes what was built with them.

Each entry says two more things:

* ``clean``: the forget finished (the files mediarec wrote were rewritten without the person, their
  models deleted). A forget killed half-way leaves ``clean`` false: the person is left out of every
  load from the first write on, and running the same ``forget`` again finishes it.
* ``readmitted``: ``mediarec add --readmit`` brought new rows of the person after the forget. Their
  rows in the files mediarec wrote (rewritten without them by the forget, so only newer rows) count
  again; their rows in files you registered or the publisher's stay left out (:func:`row_filter`).

The file: ``{"format": 2, "salt": HEX, "scopes": {NAME or "*": {DIGEST: {"clean": bool,
"readmitted": bool}}}}``. Format 1 (``{"salt", "users"}``, one list for every catalog) reads as
scope ``*``: that is what it meant.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from pathlib import Path

from mediarec.catalog.model import Catalog
from mediarec.config import get_settings
from mediarec.infra.atomic import atomic_write_text
from mediarec.infra.paths import Layout

ALL = "*"


def home_or_default(home: Path | None) -> Path:
    return Path(home) if home is not None else get_settings().home


def scope_of(name: str) -> str:
    """The catalog name an entry is kept under: a built-in dataset's own name for any of its aliases."""
    from mediarec.catalog.registry import DATASETS

    key = str(name).strip().lower()
    for info in DATASETS.values():
        if key == info.name or key in info.aliases:
            return info.name
    return str(name)


def _digest(salt: str, user: str) -> str:
    return hashlib.sha256(f"{salt}\t{user}".encode()).hexdigest()


def _read(home: Path) -> tuple[str | None, dict[str, dict[str, dict[str, bool]]]]:
    path = Layout(home).forgotten
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        salt = str(data["salt"])
        if "scopes" in data:
            scopes = {str(s): {str(d): {"clean": bool(e.get("clean", True)), "readmitted": bool(e.get("readmitted"))}
                               for d, e in entries.items()} for s, entries in data["scopes"].items()}
        else:  # format 1: one list, every catalog
            scopes = {ALL: {str(d): {"clean": True, "readmitted": False} for d in data["users"]}}
        return salt, scopes
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, {}


def _write(home: Path, salt: str, scopes: dict) -> Path:
    scopes = {s: dict(sorted(e.items())) for s, e in sorted(scopes.items()) if e}
    return atomic_write_text(Layout(home).forgotten,
                             json.dumps({"format": 2, "salt": salt, "scopes": scopes}) + "\n", private=True)


def _entries(scopes: dict, name: str) -> dict[str, dict[str, bool]]:
    """The entries that hold for catalog ``name``: ``*``'s, overridden by the catalog's own."""
    return {**scopes.get(ALL, {}), **scopes.get(scope_of(name), {})}


def entry(user: str, name: str, home: Path | None = None) -> dict[str, bool] | None:
    """``user``'s entry in catalog ``name`` (``{"clean", "readmitted"}``), or None if not forgotten there."""
    salt, scopes = _read(home_or_default(home))
    return None if salt is None else _entries(scopes, name).get(_digest(salt, str(user)))


def is_forgotten(user: str, name: str, home: Path | None = None) -> bool:
    """Whether ``user``'s rows in catalog ``name`` are left out (all of them: not readmitted)."""
    e = entry(user, name, home)
    return e is not None and not e["readmitted"]


def remember_forgotten(user: str, name: str, home: Path | None = None, clean: bool = False) -> Path:
    """Leave ``user`` out of every load of catalog ``name`` (``*``: of every catalog) from now on.

    Written first by a forget, with ``clean`` false; :func:`mark_clean` when it has finished."""
    home = home_or_default(home)
    salt, scopes = _read(home)
    salt = salt or secrets.token_hex(16)
    scope, d = (ALL if name == ALL else scope_of(name)), _digest(salt, str(user))
    if scope == ALL:  # everywhere: a catalog's own entry (one readmitting them) would override it
        for entries in scopes.values():
            entries.pop(d, None)
    scopes.setdefault(scope, {})[d] = {"clean": clean, "readmitted": False}
    return _write(home, salt, scopes)


def mark_clean(user: str, name: str, home: Path | None = None) -> None:
    """The forget of ``user`` in ``name`` has finished: every file mediarec wrote is rewritten without them."""
    _update(user, name, home, clean=True)


def readmit(user: str, name: str, home: Path | None = None) -> None:
    """``mediarec add --readmit``: new rows of ``user`` in catalog ``name`` count again (their rows in
    files mediarec did not write stay left out)."""
    _update(user, name, home, readmitted=True)


def _update(user: str, name: str, home: Path | None, **change: bool) -> None:
    home = home_or_default(home)
    salt, scopes = _read(home)
    if salt is None:
        return
    d, scope = _digest(salt, str(user)), (ALL if name == ALL else scope_of(name))
    current = scopes.get(scope, {}).get(d) or scopes.get(ALL, {}).get(d)
    if current is None:
        return
    scopes.setdefault(scope, {})[d] = {**current, **change}
    _write(home, salt, scopes)


def row_filter(name: str, home: Path | None = None) -> Callable[[str, bool], bool] | None:
    """For a catalog's loader: ``keep(user, written_by_mediarec)`` for each row, or None when nobody
    in ``name`` was forgotten. A readmitted person's rows count only in the files mediarec wrote."""
    salt, scopes = _read(home_or_default(home))
    entries = _entries(scopes, name) if salt is not None else {}
    if not entries:
        return None
    cache: dict[str, dict[str, bool] | None] = {}

    def keep(user: str, written_by_mediarec: bool) -> bool:
        if user not in cache:
            cache[user] = entries.get(_digest(salt, user))
        e = cache[user]
        return e is None or (e["readmitted"] and written_by_mediarec)

    return keep


def drop_forgotten(catalog: Catalog, home: Path | None = None) -> Catalog:
    """``catalog`` without the interactions of the people forgotten in it (itself when there are none).

    A readmitted person is kept here: their loader (:func:`mediarec.catalog.own.load_registered`)
    has already left out the rows that stay forgotten."""
    keep = row_filter(catalog.name, home)
    if keep is None:
        return catalog
    gone = {u for u in catalog.by_user if not keep(u, True)}
    if not gone:
        return catalog
    return catalog.replace(interactions=[x for x in catalog.interactions if x.user not in gone])
