"""mediarec's own catalog format: items and interactions as JSONL or CSV (docs/formats.md),
read strictly (UTF-8, every bad row named by file and line) and written back atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable, Iterator

from mediarec.catalog.model import Catalog, Interaction, Item
from mediarec.catalog.validate import (EVENT_KINDS, ITEM_KINDS, Checks, PathLike, csv_rows,
                                       decode_strict_utf8, lines, make_item, new_interaction, read_bytes)
from mediarec.errors import CatalogError
from mediarec.infra.atomic import atomic_open

_ITEM_FIELDS = ("id", "title", "kind", "year", "genres", "tags", "description")
_INTERACTION_FIELDS = ("user", "item", "timestamp", "rating", "weight", "event")


def _format_of(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    first = next((ln.strip() for _, ln in lines(text) if ln.strip()), "")
    return "jsonl" if first.startswith("{") else "csv"


def _jsonl_objects(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in lines(text):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise CatalogError(f"bad JSON ({e.msg} at column {e.colno})", where, n) from None
        if not isinstance(obj, dict):
            raise CatalogError(f"expected a JSON object, found {type(obj).__name__}", where, n)
        yield n, obj


def _split_list(v: Any, name: str, where: str, n: int) -> tuple[str, ...]:
    if v is None or v == "":
        return ()
    if isinstance(v, str):
        parts = v.split("|")
    elif isinstance(v, (list, tuple)):
        if not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v):
            raise CatalogError(f"{name} must be a list of strings", where, n)
        parts = [str(x) for x in v]
    else:
        raise CatalogError(f"{name} must be a list of strings or a '|'-separated string", where, n)
    return tuple(dict.fromkeys(" ".join(x.split()) for x in parts if x.strip()))


def _generic_item(rec: dict[str, Any], extra: dict[str, Any], where: str, n: int) -> Item:
    for key in ("id", "title"):
        if key not in rec or rec[key] is None or (isinstance(rec[key], str) and not rec[key].strip()):
            raise CatalogError(f"missing or empty {key!r}" if key == "id" else "empty title", where, n)
    item_id = Checks.ident(rec["id"], "item", where, n)
    title = rec["title"]
    if not isinstance(title, str):
        raise CatalogError(f"title must be a string, found {type(title).__name__}", where, n)
    kind = rec.get("kind")
    if kind is None or kind == "":
        kind = "movie"
    if kind not in ITEM_KINDS:
        raise CatalogError(f"unknown kind {kind!r} (one of: {', '.join(ITEM_KINDS)})", where, n)
    year = rec.get("year")
    if year is None or year == "":
        year = None
    else:
        if isinstance(year, bool) or isinstance(year, float) and not year.is_integer():
            raise CatalogError(f"year {year!r} is not an integer", where, n)
        try:
            year = int(str(year).strip()) if not isinstance(year, (int, float)) else int(year)
        except ValueError:
            raise CatalogError(f"year {year!r} is not an integer", where, n) from None
    desc = rec.get("description") or ""
    if not isinstance(desc, str):
        raise CatalogError("description must be a string", where, n)
    if not isinstance(extra, dict):
        raise CatalogError("extra must be a JSON object", where, n)
    return make_item(where, n, id=item_id, title=title, kind=kind, year=year,
                      genres=_split_list(rec.get("genres"), "genres", where, n),
                      tags=_split_list(rec.get("tags"), "tags", where, n),
                      description=desc.strip(), extra=extra)


def _generic_interaction(rec: dict[str, Any], items: dict[str, Item], checks: Checks, where: str,
                         n: int) -> Interaction:
    for key in ("user", "item"):
        if key not in rec:
            raise CatalogError(f"missing {key!r}", where, n)
    user = Checks.ident(rec["user"], "user", where, n)
    item = Checks.ident(rec["item"], "item", where, n)
    if item not in items:
        raise CatalogError(f"unknown item {item!r} (not in the items file)", where, n)
    ts_raw = rec.get("timestamp")
    ts = 0.0 if ts_raw is None or ts_raw == "" else checks.timestamp(ts_raw, where, n)
    r_raw = rec.get("rating")
    rating = None if r_raw is None or r_raw == "" else Checks.number(r_raw, "rating", where, n, 0.0)
    w_raw = rec.get("weight")
    weight = 1.0 if w_raw is None or w_raw == "" else Checks.number(w_raw, "weight", where, n, 0.0)
    event = rec.get("event")
    if event is None or event == "":
        event = "rating" if rating is not None else "watch"
    if event not in EVENT_KINDS:
        raise CatalogError(f"unknown event {event!r} (one of: {', '.join(EVENT_KINDS)})", where, n)
    return new_interaction(user=user, item=item, timestamp=ts, rating=rating, weight=weight,
                            event=event)


def _generic_records(path: Path, what: str, required: tuple[str, ...]
                     ) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(line, known fields, extra fields) from a JSONL or CSV file (strict UTF-8)."""
    where = str(path)
    text = decode_strict_utf8(read_bytes(path), where)
    known = _ITEM_FIELDS if what == "items" else _INTERACTION_FIELDS
    if _format_of(path, text) == "jsonl":
        for n, obj in _jsonl_objects(text, where):
            rec = {k: v for k, v in obj.items() if k in known}
            extra: dict[str, Any] = {}
            if what == "items":
                given = obj.get("extra")
                if given is not None and not isinstance(given, dict):
                    raise CatalogError("'extra' must be a JSON object", where, n)
                extra = {**(given or {}), **{k: v for k, v in obj.items()
                                             if k not in known and k != "extra"}}
            yield n, rec, extra
    else:
        if path.suffix.lower() == ".tsv":
            text = "\n".join(",".join(_csv_quote(c) for c in ln.split("\t")) for _, ln in lines(text))
        header, rows = csv_rows(text, where, required, what)
        for n, row in rows:
            rec, extra = {}, {}
            for col, val in zip(header, row):
                if col in known:
                    rec[col] = val.strip()
                elif col and val.strip():
                    extra[col] = val.strip()
            yield n, rec, extra


def _csv_quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if any(c in s for c in ',"\n') else s


def load_generic(items_path: PathLike, interactions_path: PathLike | None = None,
                 name: str | None = None) -> Catalog:
    """A catalog in mediarec's own format (see docs/formats.md).

    Items: JSONL (one object per line: id, title, kind, year, genres, tags, description, extra;
    other keys go into ``extra``) or CSV (header with id,title and optionally
    kind,year,genres,tags,description; genres/tags "|"-separated; other columns go into
    ``extra``). Interactions: JSONL or CSV with user,item and optionally
    timestamp (unix seconds or ISO-8601; default 0), rating, weight (default 1), event
    (default "rating" when a rating is given, else "watch"). The format is chosen by the file
    suffix (.jsonl/.ndjson/.json, .csv/.tsv), else by whether the first line starts with "{".
    Files must be UTF-8; blank lines are skipped.
    """
    ipath = Path(items_path)
    where = str(ipath)
    items = load_items(ipath)
    if not items:
        raise CatalogError("no items", where)

    interactions = load_interactions(interactions_path, items) if interactions_path is not None else []
    if name is None:
        name = ipath.parent.name if ipath.stem in ("items", "catalog") and ipath.parent.name else ipath.stem
    return Catalog(name, items.values(), interactions, source=str(ipath))


def load_items(items_path: PathLike, known: Any = None) -> dict[str, Item]:
    """The items of one items file by id; ``known``: the items of earlier files of the same
    catalog (``mediarec add``), whose ids this file must not repeat."""
    ipath = Path(items_path)
    items: dict[str, Item] = {}
    for n, rec, extra in _generic_records(ipath, "items", ("id", "title")):
        it = _generic_item(rec, extra, str(ipath), n)
        if it.id in items or (known is not None and it.id in known):
            raise CatalogError(f"duplicate item id {it.id!r}" + ("" if it.id in items else
                                                                 " (already in the catalog)"), ipath, n)
        items[it.id] = it
    return items


def load_interactions(interactions_path: PathLike, items: dict[str, Item] | Any) -> list[Interaction]:
    """The rows of one interactions file, each checked against ``items`` (file and line on error)."""
    xpath = Path(interactions_path)
    checks = Checks()
    return [_generic_interaction(rec, items, checks, str(xpath), n)
            for n, rec, _extra in _generic_records(xpath, "interactions", ("user", "item"))]


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def write_generic(catalog: Catalog, items_path: PathLike, interactions_path: PathLike | None = None
                  ) -> None:
    """Write ``catalog`` in the generic format (JSONL, or CSV for a ``.csv`` suffix), so that
    :func:`load_generic` reads it back. In CSV, ``extra`` values become columns (as strings) and a
    "|" inside a genre or tag cannot be represented. Files are written atomically."""

    def atomic_write(path: Path, write: Callable[[io.TextIOBase], None]) -> None:
        with atomic_open(path, "w", suffix=".part", encoding="utf-8", newline="") as fh:
            write(fh)

    ipath = Path(items_path)
    items = list(catalog.items.values())
    if _is_csv(ipath):
        extra_cols = list(dict.fromkeys(k for it in items for k in it.extra if k not in _ITEM_FIELDS))

        def write_items(fh):
            w = csv.writer(fh, lineterminator="\n")
            w.writerow([*_ITEM_FIELDS, *extra_cols])
            for it in items:
                w.writerow([it.id, it.title, it.kind, "" if it.year is None else it.year,
                            "|".join(it.genres), "|".join(it.tags), it.description,
                            *("" if it.extra.get(c) is None else it.extra[c] for c in extra_cols)])
    else:
        def write_items(fh):
            for it in items:
                fh.write(json.dumps(it.model_dump(mode="json"), ensure_ascii=False) + "\n")
    atomic_write(ipath, write_items)

    if interactions_path is None:
        return
    xpath = Path(interactions_path)
    if _is_csv(xpath):
        def write_inter(fh):
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["user", "item", "timestamp", "rating", "weight", "event"])
            for x in catalog.interactions:
                w.writerow([x.user, x.item, repr(float(x.timestamp)),
                            "" if x.rating is None else repr(float(x.rating)),
                            repr(float(x.weight)), x.event])
    else:
        def write_inter(fh):
            for x in catalog.interactions:
                fh.write(json.dumps({"user": x.user, "item": x.item, "timestamp": x.timestamp,
                                     "rating": x.rating, "weight": x.weight, "event": x.event},
                                    ensure_ascii=False) + "\n")
    atomic_write(xpath, write_inter)

