"""Your own catalogs by name: the files you registered, remembered under ``$MEDIAREC_HOME``.

``mediarec index --items FILE [--interactions FILE] --name NAME`` (or ``--catalog DIR``) checks the
files and writes ``$MEDIAREC_HOME/catalogs/NAME/catalog.json`` with their absolute paths; from then
on ``--dataset NAME`` loads them on every command, as for the built-in datasets. Your files stay
where they are and are read again each time, so editing them is enough to update the catalog (the
next ``mediarec index`` re-embeds only the items whose text changed).

Beside the registration live the files mediarec itself writes for the catalog:

* ``feedback.jsonl`` -- chat feedback saved with ``mediarec chat --save-feedback`` (:mod:`.feedback`),
  read after your interaction files;
* ``added/`` -- copies of the files ``mediarec add`` brought in (a snapshot, so the catalog does not
  change if the original is edited or deleted later).

The registration also carries ``collab_pending`` while a collaborative refit runs in the background
after ``mediarec add --interactions``: which fit serves the grown catalog meanwhile
(:mod:`mediarec.index.pending`).

Every interaction file, yours and these, is read by the same strict loader (file and line on error).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediarec.catalog.loaders.generic import load_interactions, load_items
from mediarec.catalog.model import Catalog, Item
from mediarec.infra.paths import Layout
from mediarec.config import get_settings
from mediarec.errors import CatalogError
from mediarec.infra.atomic import atomic_write_text

REGISTRATION = "catalog.json"
FORMAT = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,49}$")
_ITEM_NAMES = ("items.jsonl", "items.ndjson", "items.json", "items.csv", "items.tsv")
_INTERACTION_NAMES = tuple(n.replace("items", "interactions") for n in _ITEM_NAMES)


def catalogs_root(home: Path | None = None) -> Path:
    return Layout(home).catalogs if home is not None else get_settings().layout.catalogs


@dataclass
class Registration:
    """One registered catalog: its name, its files (absolute paths, in reading order)."""

    name: str
    folder: Path
    items: list[str]
    interactions: list[str] = field(default_factory=list)
    # While a collaborative refit is pending: {"serving": fingerprint, "settings": CollabSettings dump,
    # "target": fingerprint} (mediarec.index.pending); None when the index's own fit serves.
    collab_pending: dict[str, Any] | None = None

    @property
    def path(self) -> Path:
        return self.folder / REGISTRATION

    @property
    def home(self) -> Path:
        """The ``$MEDIAREC_HOME`` the registration lives in (``HOME/catalogs/NAME``)."""
        return self.folder.parent.parent

    @property
    def feedback_path(self) -> Path:
        return self.folder / "feedback.jsonl"

    @property
    def added_dir(self) -> Path:
        return self.folder / "added"

    def interaction_files(self) -> list[Path]:
        """Every interaction file the catalog reads: yours, the feedback log, then the copies ``add``
        kept, in the order they were added (so a catalog grown in memory by ``add`` and the same
        catalog loaded again have their rows in the same order: the same fingerprint)."""
        files = [Path(p) for p in self.interactions]
        feedback = [self.feedback_path] if self.feedback_path.is_file() else []
        return [p for p in files if not self.owned_by_mediarec(p)] + feedback + \
            [p for p in files if self.owned_by_mediarec(p)]

    def owned_by_mediarec(self, path: Path) -> bool:
        """Whether ``path`` is one of the files mediarec wrote (the feedback log, an added copy),
        which it may rewrite; the files you registered are yours and are never rewritten."""
        return Path(path).resolve().is_relative_to(self.folder.resolve())

    def to_json(self) -> dict[str, Any]:
        out = {"format": FORMAT, "name": self.name, "items": self.items, "interactions": self.interactions}
        return out | ({"collab_pending": self.collab_pending} if self.collab_pending else {})

    def save(self) -> Path:
        """Atomically: an interrupted ``add`` leaves the previous registration whole."""
        return atomic_write_text(self.path, json.dumps(self.to_json(), indent=2) + "\n")


def check_name(name: str) -> str:
    from mediarec.catalog.registry import DATASETS

    if not _NAME.match(name or ""):
        raise CatalogError(f"bad catalog name {name!r}: 2-50 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit")
    if any(name.lower() == i.name or name.lower() in i.aliases for i in DATASETS.values()):
        raise CatalogError(f"{name!r} is a built-in dataset; choose another --name for your catalog")
    return name


def registration(name: str, home: Path | None = None) -> Registration | None:
    """The registration of ``name``, or None if no catalog of that name is registered."""
    if not _NAME.match(str(name)):
        return None
    folder = catalogs_root(home) / name
    path = folder / REGISTRATION
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Registration(name=data["name"], folder=folder, items=list(data["items"]),
                            interactions=list(data.get("interactions", [])),
                            collab_pending=data.get("collab_pending") or None)
    except (ValueError, KeyError, TypeError) as e:
        raise CatalogError(f"the registration is unreadable ({type(e).__name__}: {e}); register the "
                           f"catalog again with `mediarec index --items FILE --name {name}`", path) from None


def registered_names(home: Path | None = None) -> list[str]:
    root = catalogs_root(home)
    return sorted(p.parent.name for p in root.glob(f"*/{REGISTRATION}")) if root.is_dir() else []


def files_in(folder: str | Path) -> tuple[Path, Path | None]:
    """``items.*`` and ``interactions.*`` in a ``--catalog DIR`` (the interactions are optional)."""
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise CatalogError("not a folder", d)
    items = next((d / n for n in _ITEM_NAMES if (d / n).is_file()), None)
    if items is None:
        raise CatalogError(f"no items file in the folder (looked for {', '.join(_ITEM_NAMES)})", d)
    return items, next((d / n for n in _INTERACTION_NAMES if (d / n).is_file()), None)


def _existing(path: str | Path, what: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise CatalogError(f"{what} file not found", p)
    return str(p.resolve())


def register(name: str, items: str | Path, interactions: str | Path | None = None,
             home: Path | None = None) -> tuple[Registration, Catalog]:
    """Check the files (every row; file and line on error), then remember them under ``name``.

    Registering a name again points it at the new files; a feedback log and added files of the
    old registration are kept only when the new files are the same ones."""
    check_name(name)
    old = registration(name, home)
    files = [_existing(items, "items")]
    inter = [_existing(interactions, "interactions")] if interactions is not None else []
    reg = Registration(name=name, folder=catalogs_root(home) / name, items=files, interactions=inter)
    if old is not None and old.items[:1] == files and [p for p in old.interactions
                                                        if not old.owned_by_mediarec(Path(p))] == inter:
        reg = old  # the same files: keep what add and feedback brought in
    catalog = load_registered(reg)
    reg.save()
    return reg, catalog


def load_registered(reg: Registration, forgotten: bool = True) -> Catalog:
    """The catalog of a registration: every items file, then every interaction file, all checked.

    Without the rows of people forgotten in this catalog (``forgotten=False``: with them, for
    ``mediarec forget`` itself); a readmitted person's rows count only in the files mediarec wrote
    (:func:`mediarec.catalog.forgotten.row_filter`)."""
    from mediarec.catalog.forgotten import row_filter

    keep = row_filter(reg.name, reg.home) if forgotten else None
    items: dict[str, Item] = {}
    for path in reg.items:
        if not Path(path).is_file():
            raise CatalogError(f"the items file of catalog {reg.name!r} is gone (registered in {reg.path}); "
                               f"register it again with `mediarec index --items FILE --name {reg.name}`", path)
        items.update(load_items(path, known=items))
    if not items:
        raise CatalogError("no items", reg.items[0])
    interactions = []
    for path in reg.interaction_files():
        if not path.is_file():
            raise CatalogError(f"the interactions file of catalog {reg.name!r} is gone (registered in "
                               f"{reg.path})", path)
        rows = load_interactions(path, items)
        if keep is not None:
            mine = reg.owned_by_mediarec(path)
            rows = [x for x in rows if keep(x.user, mine)]
        interactions += rows
    return Catalog(reg.name, items.values(), interactions, source=str(reg.path))


def default_name(path: str | Path) -> str:
    """A catalog name from a file or folder: the folder's name for ``items.*``, else the file's stem."""
    p = Path(path).expanduser().resolve()
    base = p.name if p.is_dir() else (p.parent.name if p.stem in ("items", "catalog") else p.stem)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._")[:50] or "my-catalog"
