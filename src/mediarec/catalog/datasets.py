"""Loaders for the real datasets (MovieLens 100k, MovieLens latest-small, Last.fm hetrec-2k), our
generic JSONL/CSV format and the bundled demo catalog, plus fetching from the publishers.

Every loader reads and checks all rows first and builds the :class:`~mediarec.catalog.model.Catalog`
last, so a bad file raises :class:`~mediarec.errors.CatalogError` (naming the file and the 1-based
line) and never returns a half-loaded catalog. The formats and what each loader keeps or skips
are described in ``docs/formats.md``.

The real loaders attach a ``load_stats`` dict to the catalog they return (rows read, rows
skipped and why); skipped interactions are also reported with :func:`warnings.warn`
(:class:`DatasetWarning`).
"""

from __future__ import annotations

import calendar
import csv
import hashlib
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, get_args

from pydantic import ValidationError

from mediarec.catalog.model import Catalog, EventKind, Interaction, Item, ItemKind
from mediarec.config import get_settings
from mediarec.errors import CatalogError
from mediarec.infra.progress import transfer

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetWarning",
    "clean_title",
    "dataset_path",
    "fetch_dataset",
    "load_dataset",
    "load_demo",
    "load_generic",
    "load_lastfm_2k",
    "load_movielens_100k",
    "load_movielens_latest_small",
    "resolve_dataset_name",
    "write_generic",
]

PathLike = str | os.PathLike

ITEM_KINDS: tuple[str, ...] = get_args(ItemKind)
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)

# Last.fm launched in 2002: hetrec tagging dates before that (a handful say 1956, 1957, 1979)
# are data-entry noise and are not used as interaction times.
LASTFM_EARLIEST_PLAUSIBLE = calendar.timegm((2002, 1, 1, 0, 0, 0))

_INTERACTION_FIELD_NAMES = ("user", "item", "timestamp", "rating", "weight", "event")


def _interaction_factory() -> Callable[..., Interaction]:
    """A constructor for already-validated interactions.

    ``Interaction.model_construct`` is the documented way to skip validation, but at ~6 µs a row it
    is most of the time of loading 100k ratings. This builds the same object state directly and is
    used only if it proves identical to ``model_construct`` on this pydantic version; otherwise
    ``model_construct`` is used.
    """
    new, set_ = object.__new__, object.__setattr__
    names = frozenset(_INTERACTION_FIELD_NAMES)

    def fast(*, user: str, item: str, timestamp: float, rating: float | None, weight: float,
             event: str) -> Interaction:
        obj = new(Interaction)
        set_(obj, "__dict__", {"user": user, "item": item, "timestamp": timestamp, "rating": rating,
                               "weight": weight, "event": event})
        set_(obj, "__pydantic_fields_set__", set(names))
        set_(obj, "__pydantic_extra__", None)
        set_(obj, "__pydantic_private__", None)
        return obj

    try:
        sample = dict(user="u", item="i", timestamp=1.5, rating=4.0, weight=2.0, event="rating")
        ref, got = Interaction.model_construct(**sample), fast(**sample)
        ok = (set(Interaction.model_fields) == names and ref == got
              and ref.__getstate__() == got.__getstate__() and hash(ref) == hash(got)
              and ref.model_dump() == got.model_dump())
    except Exception:  # pragma: no cover - a pydantic that works differently
        ok = False
    return fast if ok else Interaction.model_construct


_new_interaction = _interaction_factory()


class DatasetWarning(UserWarning):
    """A loader skipped rows it could not use (the count is in the message and in ``load_stats``)."""


# ------------------------------------------------------------------------------------------
# titles
# ------------------------------------------------------------------------------------------

_ARTICLE_WORDS = ("The", "A", "An", "La", "Le", "Les", "L'", "Il", "I", "Lo", "Gli", "El", "Los",
                  "Las", "Das", "Der", "Die", "Det", "Den", "Un", "Une", "Da")
_TRAILING_ARTICLE = re.compile(
    r"^(?P<body>.+?),\s+(?P<art>"
    + "|".join(re.escape(a) for a in sorted(_ARTICLE_WORDS, key=len, reverse=True))
    + r")\s*$")
_TITLE_YEAR = re.compile(r"\s*\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_AKA = re.compile(r"^(a\.k\.a\.\s+)(.*)$", re.I)


def _move_article(s: str) -> str:
    """ "Shawshank Redemption, The" -> "The Shawshank Redemption"; "Avventura, L'" -> "L'Avventura"."""
    m = _TRAILING_ARTICLE.match(s.strip())
    if not m:
        return s.strip()
    art, body = m.group("art"), m.group("body").strip()
    return f"{art}{body}" if art.endswith("'") else f"{art} {body}"


def _split_trailing_parens(s: str) -> tuple[str, list[str]]:
    """ "Postman, The (Postino, Il)" -> ("Postman, The", ["Postino, Il"]) (balanced groups only)."""
    alts: list[str] = []
    s = s.rstrip()
    while s.endswith(")"):
        depth, start = 0, -1
        for i in range(len(s) - 1, -1, -1):
            if s[i] == ")":
                depth += 1
            elif s[i] == "(":
                depth -= 1
                if depth == 0:
                    start = i
                    break
        if start <= 0:  # unbalanced, or the whole title is one parenthesis: leave it alone
            break
        alts.insert(0, s[start + 1:-1])
        s = s[:start].rstrip()
    return s, alts


def clean_title(raw: str) -> tuple[str, int | None]:
    """A MovieLens-style title as people write it, and its year.

    "Toy Story (1995)" -> ("Toy Story", 1995); "Shawshank Redemption, The (1994)" ->
    ("The Shawshank Redemption", 1994); "Postman, The (Postino, Il) (1994)" ->
    ("The Postman (Il Postino)", 1994). A year range "(2006–2007)" gives its first year.
    """
    t = raw.strip()
    year = None
    m = _TITLE_YEAR.search(t)
    if m and m.start() > 0:
        year = int(m.group(1))
        t = t[: m.start()]
    main, alts = _split_trailing_parens(t)
    parts = [_move_article(main)]
    for a in alts:
        aka = _AKA.match(a.strip())
        parts.append(f"({aka.group(1)}{_move_article(aka.group(2))})" if aka else f"({_move_article(a)})")
    title = " ".join(p for p in parts if p).strip()
    return (title or raw.strip()), year


# ------------------------------------------------------------------------------------------
# reading helpers
# ------------------------------------------------------------------------------------------

def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CatalogError("file not found", path) from None
    except IsADirectoryError:
        raise CatalogError("is a folder, expected a file", path) from None
    except OSError as e:
        raise CatalogError(f"cannot read: {e.strerror or e}", path) from None


def _decode_strict_utf8(data: bytes, where: str) -> str:
    """UTF-8 (a BOM is allowed); undecodable bytes are an error naming the line."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise CatalogError(
            f"not valid UTF-8 (byte 0x{data[e.start]:02x} at column {col}); save the file as UTF-8",
            where, line) from None


def _decode_lenient(data: bytes) -> str:
    """UTF-8 if the whole file is valid UTF-8, otherwise latin-1 (which decodes any byte)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its CR/LF). Splits on "\\n" only: str.splitlines would
    also split on U+0085 and friends, which latin-1 text can contain."""
    for n, line in enumerate(text.split("\n"), 1):
        yield n, line.rstrip("\r")


def _split_fields(line: str, sep: str, expected: int | tuple[int, int], where: str, n: int,
                  what: str) -> list[str]:
    fields = line.split(sep)
    lo, hi = (expected, expected) if isinstance(expected, int) else expected
    if not lo <= len(fields) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        sep_name = {"\t": "tab", "|": "'|'", ",": "comma"}.get(sep, repr(sep))
        raise CatalogError(f"{what}: expected {want} {sep_name}-separated fields, found {len(fields)}",
                           where, n)
    return fields


def _csv_rows(text: str, where: str, required: Iterable[str], what: str
              ) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Header and (line number, row) pairs of a CSV text; blank rows are skipped, a row with the
    wrong number of fields or a missing required column is an error."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[str] | None = None
    try:
        for row in reader:
            if any(c.strip() for c in row):
                header = [c.strip() for c in row]
                break
    except csv.Error as e:
        raise CatalogError(f"{what}: bad CSV ({e})", where, reader.line_num) from None
    if header is None:
        raise CatalogError(f"{what}: empty file (expected a header line)", where)
    missing = [c for c in required if c not in header]
    if missing:
        raise CatalogError(f"{what}: missing column(s) {', '.join(missing)} in the header "
                           f"(found: {', '.join(header)})", where, reader.line_num)
    dupes = sorted({c for c in header if header.count(c) > 1 and c})
    if dupes:
        raise CatalogError(f"{what}: duplicate column(s) {', '.join(dupes)} in the header", where,
                           reader.line_num)

    def rows() -> Iterator[tuple[int, list[str]]]:
        width = len(header)
        try:
            for row in reader:
                if not row or (not row[0].strip() and not any(c.strip() for c in row)):
                    continue
                if len(row) != width:
                    raise CatalogError(f"{what}: expected {width} fields (as in the header), found "
                                       f"{len(row)}", where, reader.line_num)
                yield reader.line_num, row
        except csv.Error as e:
            raise CatalogError(f"{what}: bad CSV ({e})", where, reader.line_num) from None

    return header, rows()


class _Checks:
    """Field checks shared by the loaders (one 'now' per load for the future-timestamp limit)."""

    def __init__(self) -> None:
        self.latest = time.time() + 86400.0

    def timestamp(self, raw: Any, where: str, n: int) -> float:
        if isinstance(raw, bool):
            raise CatalogError(f"timestamp {raw!r} is not a number or ISO-8601 date", where, n)
        if isinstance(raw, (int, float)):
            t = float(raw)
        else:
            s = str(raw).strip()
            try:
                t = float(s)
            except ValueError:
                try:
                    dt = datetime.fromisoformat(s)
                except ValueError:
                    raise CatalogError(f"timestamp {s!r} is neither unix seconds nor an ISO-8601 date",
                                       where, n) from None
                if dt.tzinfo is None:
                    dt = dt.replace(tzinfo=timezone.utc)
                t = dt.timestamp()
        if not math.isfinite(t):
            raise CatalogError(f"timestamp {raw!r} is not a finite number", where, n)
        if t < 0:
            raise CatalogError(f"negative timestamp {raw!r} (before 1970)", where, n)
        if t > self.latest:
            when = datetime.fromtimestamp(min(t, 253402300799), tz=timezone.utc).date()
            raise CatalogError(f"timestamp {raw!r} is in the future ({when})", where, n)
        return t

    @staticmethod
    def number(raw: Any, name: str, where: str, n: int, lo: float | None = None,
               hi: float | None = None) -> float:
        if isinstance(raw, bool):
            raise CatalogError(f"{name} {raw!r} is not a number", where, n)
        try:
            v = float(raw)
        except (TypeError, ValueError):
            raise CatalogError(f"{name} {raw!r} is not a number", where, n) from None
        if not math.isfinite(v):
            raise CatalogError(f"{name} {raw!r} is not a finite number", where, n)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            raise CatalogError(f"{name} {raw!r} is outside {rng}", where, n)
        return v

    @staticmethod
    def integer(raw: str, name: str, where: str, n: int) -> int:
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise CatalogError(f"{name} {raw!r} is not an integer", where, n) from None

    @staticmethod
    def ident(raw: Any, name: str, where: str, n: int) -> str:
        if raw is None or isinstance(raw, (dict, list, bool)):
            raise CatalogError(f"{name} id {raw!r} is not a string or number", where, n)
        s = str(raw).strip()
        if not s:
            raise CatalogError(f"empty {name} id", where, n)
        return s


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "value"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _make_item(where: str, n: int, **fields: Any) -> Item:
    try:
        return Item(**fields)
    except ValidationError as e:
        raise CatalogError(f"bad item: {_validation_message(e)}", where, n) from None


def _top(counter: Counter, k: int = 10) -> tuple[str, ...]:
    return tuple(v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k])


def _attach_stats(catalog: Catalog, stats: dict[str, Any]) -> Catalog:
    catalog.load_stats = stats  # type: ignore[attr-defined]
    return catalog


# ------------------------------------------------------------------------------------------
# MovieLens 100k
# ------------------------------------------------------------------------------------------

_ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western")


def _ml100k_genres(folder: Path) -> list[str]:
    path = folder / "u.genre"
    if not path.exists():
        return list(_ML100K_GENRES)
    where = str(path)
    by_index: dict[int, str] = {}
    for n, line in _lines(_decode_lenient(_read_bytes(path))):
        if not line.strip():
            continue
        name, idx = _split_fields(line, "|", 2, where, n, "genre line")
        i = _Checks.integer(idx, "genre index", where, n)
        if i in by_index:
            raise CatalogError(f"duplicate genre index {i}", where, n)
        by_index[i] = name.strip()
    if sorted(by_index) != list(range(len(by_index))):
        raise CatalogError("genre indexes are not 0..n-1", where)
    return [by_index[i] for i in range(len(by_index))]


def load_movielens_100k(path: PathLike) -> Catalog:
    """MovieLens 100k from its folder (``u.data``, ``u.item``, ``u.genre``).

    Items: kind "movie", id = the movie id as a string, title/year split from "Title (1995)"
    with trailing articles moved to the front, genres from the 19 flags (names from ``u.genre``;
    the "unknown" genre is dropped), ``extra`` = imdb_url and release_date where given.
    Interactions: event "rating", rating 1..5, weight 1.0, timestamp = unix seconds.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CatalogError("not a folder (expected the ml-100k folder with u.data and u.item)", folder)
    checks = _Checks()
    genres = _ml100k_genres(folder)

    item_path = folder / "u.item"
    where = str(item_path)
    items: dict[str, Item] = {}
    for n, line in _lines(_read_bytes(item_path).decode("latin-1")):
        if not line.strip():
            continue
        f = _split_fields(line, "|", 5 + len(genres), where, n, "item line")
        item_id = _Checks.ident(f[0], "item", where, n)
        if item_id in items:
            raise CatalogError(f"duplicate item id {item_id!r}", where, n)
        if not f[1].strip():
            raise CatalogError(f"empty title for item {item_id!r}", where, n)
        title, year = clean_title(f[1])
        release = f[2].strip()
        if year is None and release:
            m = re.search(r"(\d{4})$", release)
            year = int(m.group(1)) if m else None
        flags = f[5:]
        bad = [x for x in flags if x not in ("0", "1")]
        if bad:
            raise CatalogError(f"genre flag {bad[0]!r} is not 0 or 1", where, n)
        item_genres = tuple(g for g, x in zip(genres, flags) if x == "1" and g.lower() != "unknown")
        extra = {}
        if f[4].strip():
            extra["imdb_url"] = f[4].strip()
        if release:
            extra["release_date"] = release
        items[item_id] = _make_item(where, n, id=item_id, title=title, kind="movie", year=year,
                                    genres=item_genres, extra=extra)

    data_path = folder / "u.data"
    where = str(data_path)
    interactions: list[Interaction] = []
    append = interactions.append
    for n, line in _lines(_decode_lenient(_read_bytes(data_path))):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) != 4:
            _split_fields(line, "\t", 4, where, n, "rating line")
        user, item = f[0].strip(), f[1].strip()
        if not user or not item:
            raise CatalogError("empty user or item id", where, n)
        if item not in items:
            raise CatalogError(f"unknown item {item!r} (not in u.item)", where, n)
        rating = _Checks.number(f[2], "rating", where, n, 0.0, 5.0)
        ts = checks.timestamp(f[3], where, n)
        append(_new_interaction(user=user, item=item, timestamp=ts, rating=rating, weight=1.0,
                                event="rating"))
    cat = Catalog("movielens-100k", items.values(), interactions, source=str(folder))
    return _attach_stats(cat, {"items": len(items), "interactions": len(interactions)})


# ------------------------------------------------------------------------------------------
# MovieLens latest-small
# ------------------------------------------------------------------------------------------

_LATEST_FILES = ("movies.csv", "ratings.csv", "tags.csv", "links.csv")


def _latest_sources(path: Path) -> dict[str, tuple[bytes, str]]:
    """{file name: (bytes, label)} from the zip, a folder holding the zip, or extracted CSVs."""
    zip_path: Path | None = None
    folder: Path | None = None
    if path.is_file():
        zip_path = path
    elif path.is_dir():
        for cand in (path, path / "ml-latest-small"):
            if (cand / "movies.csv").is_file():
                folder = cand
                break
        else:
            if (path / "ml-latest-small.zip").is_file():
                zip_path = path / "ml-latest-small.zip"
            else:
                zips = sorted(path.glob("*.zip"))
                if len(zips) == 1:
                    zip_path = zips[0]
    else:
        raise CatalogError("not found", path)

    out: dict[str, tuple[bytes, str]] = {}
    if folder is not None:
        for name in _LATEST_FILES:
            p = folder / name
            if p.is_file():
                out[name] = (_read_bytes(p), str(p))
    elif zip_path is not None:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")
                           and "__MACOSX" not in m}
                for name in _LATEST_FILES:
                    if name in members:
                        out[name] = (zf.read(members[name]), f"{zip_path}!/{members[name]}")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
            raise CatalogError(f"not a readable zip archive ({e}); fetch it again", zip_path) from None
    else:
        raise CatalogError("no movies.csv and no ml-latest-small.zip here", path)
    for name in ("movies.csv", "ratings.csv"):
        if name not in out:
            raise CatalogError(f"{name} is missing", zip_path or folder)
    return out


def load_movielens_latest_small(path: PathLike) -> Catalog:
    """MovieLens latest-small from ``ml-latest-small.zip``, a folder holding it, or a folder with
    the extracted CSVs (``movies.csv``, ``ratings.csv``; ``tags.csv`` and ``links.csv`` optional).

    Items: kind "movie", title/year/article handling as for 100k, genres split on "|"
    ("(no genres listed)" = none), tags = the up to 10 most frequent user tags (lowercased,
    deduplicated; ties alphabetical), ``extra`` = imdb_id ("tt…") and tmdb_id from links.csv.
    Interactions: event "rating", rating 0.5..5, weight 1.0, timestamp = unix seconds.
    Tags on movies that are not in movies.csv are skipped (counted in ``load_stats``).
    """
    p = Path(path)
    src = _latest_sources(p)
    checks = _Checks()

    data, where = src["movies.csv"]
    header, rows = _csv_rows(_decode_strict_utf8(data, where), where,
                             ("movieId", "title", "genres"), "movies.csv")
    i_id, i_title, i_genres = header.index("movieId"), header.index("title"), header.index("genres")
    raw_items: dict[str, tuple[int, str, int | None, tuple[str, ...]]] = {}
    for n, row in rows:
        item_id = _Checks.ident(row[i_id], "movie", where, n)
        if item_id in raw_items:
            raise CatalogError(f"duplicate movie id {item_id!r}", where, n)
        if not row[i_title].strip():
            raise CatalogError(f"empty title for movie {item_id!r}", where, n)
        title, year = clean_title(row[i_title])
        g = row[i_genres].strip()
        genres = () if g in ("", "(no genres listed)") else tuple(
            dict.fromkeys(x.strip() for x in g.split("|") if x.strip()))
        raw_items[item_id] = (n, title, year, genres)
    movies_where = where

    links: dict[str, dict[str, str]] = {}
    if "links.csv" in src:
        data, where = src["links.csv"]
        header, rows = _csv_rows(_decode_strict_utf8(data, where), where, ("movieId",), "links.csv")
        i_m = header.index("movieId")
        i_imdb = header.index("imdbId") if "imdbId" in header else None
        i_tmdb = header.index("tmdbId") if "tmdbId" in header else None
        for n, row in rows:
            extra = {}
            if i_imdb is not None and row[i_imdb].strip():
                extra["imdb_id"] = "tt" + row[i_imdb].strip()
            if i_tmdb is not None and row[i_tmdb].strip():
                extra["tmdb_id"] = row[i_tmdb].strip()
            links[row[i_m].strip()] = extra

    tag_counts: dict[str, Counter] = defaultdict(Counter)
    tags_skipped = 0
    if "tags.csv" in src:
        data, where = src["tags.csv"]
        header, rows = _csv_rows(_decode_strict_utf8(data, where), where,
                                 ("userId", "movieId", "tag"), "tags.csv")
        i_m, i_t = header.index("movieId"), header.index("tag")
        i_ts = header.index("timestamp") if "timestamp" in header else None
        for n, row in rows:
            if i_ts is not None:
                checks.timestamp(row[i_ts], where, n)
            movie = row[i_m].strip()
            if movie not in raw_items:
                tags_skipped += 1
                continue
            tag = " ".join(row[i_t].split()).lower()
            if tag:
                tag_counts[movie][tag] += 1

    items: list[Item] = []
    for item_id, (n, title, year, genres) in raw_items.items():
        items.append(_make_item(movies_where, n, id=item_id, title=title, kind="movie", year=year,
                                genres=genres, tags=_top(tag_counts.get(item_id, Counter())),
                                extra=links.get(item_id, {})))

    data, where = src["ratings.csv"]
    header, rows = _csv_rows(_decode_strict_utf8(data, where), where,
                             ("userId", "movieId", "rating", "timestamp"), "ratings.csv")
    i_u, i_m, i_r, i_ts = (header.index(c) for c in ("userId", "movieId", "rating", "timestamp"))
    interactions: list[Interaction] = []
    append = interactions.append
    number, timestamp = _Checks.number, checks.timestamp
    for n, row in rows:
        user, item = row[i_u].strip(), row[i_m].strip()
        if not user or not item:
            raise CatalogError("empty userId or movieId", where, n)
        if item not in raw_items:
            raise CatalogError(f"unknown movie {item!r} (not in movies.csv)", where, n)
        append(_new_interaction(user=user, item=item, timestamp=timestamp(row[i_ts], where, n),
                                rating=number(row[i_r], "rating", where, n, 0.0, 5.0), weight=1.0,
                                event="rating"))
    cat = Catalog("movielens-latest-small", items, interactions, source=str(p))
    return _attach_stats(cat, {"items": len(items), "interactions": len(interactions),
                               "tags_on_unknown_movies_skipped": tags_skipped})


# ------------------------------------------------------------------------------------------
# Last.fm hetrec2011-lastfm-2k
# ------------------------------------------------------------------------------------------

def _tsv_rows(path: Path, expected: int | tuple[int, int], what: str, header: bool = True
              ) -> Iterator[tuple[int, list[str]]]:
    where = str(path)
    first = header
    for n, line in _lines(_decode_lenient(_read_bytes(path))):
        if not line.strip():
            continue
        if first:
            first = False
            continue
        yield n, _split_fields(line, "\t", expected, where, n, what)


def load_lastfm_2k(path: PathLike) -> Catalog:
    """Last.fm hetrec2011-lastfm-2k from its folder.

    Items: kind "artist", id = artistID, title = name, tags = the up to 10 tag values applied most
    often to the artist (from ``user_taggedartists.dat`` + ``tags.dat``; ties alphabetical),
    ``extra={"url": ...}``. Each file is decoded as UTF-8 if it is valid UTF-8, else latin-1;
    CR/LF line ends are both accepted.

    Interactions (``user_artists.dat``): event "play", weight = the raw play count, rating None.
    The dataset has no listening times, so timestamp = the earliest day on which that user tagged
    that artist (00:00 UTC, from day/month/year) if they ever did, else 0. Tagging dates before
    2002 (Last.fm's launch; a few rows say 1956/1957/1979) are ignored as noise.

    Skipped, not errors (counted in ``load_stats``; skipped plays also give a
    :class:`DatasetWarning`): play rows whose artist is not in ``artists.dat``, tagging rows whose
    artist or tag id is unknown.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CatalogError("not a folder (expected hetrec2011-lastfm-2k with artists.dat)", folder)
    checks = _Checks()

    p = folder / "artists.dat"
    where = str(p)
    artists: dict[str, tuple[int, str, str]] = {}
    for n, f in _tsv_rows(p, (2, 4), "artist line"):
        aid = _Checks.ident(f[0], "artist", where, n)
        if aid in artists:
            raise CatalogError(f"duplicate artist id {aid!r}", where, n)
        name = f[1].strip()
        if not name:
            raise CatalogError(f"empty name for artist {aid!r}", where, n)
        artists[aid] = (n, name, f[2].strip() if len(f) > 2 else "")

    tag_names: dict[str, str] = {}
    p = folder / "tags.dat"
    if p.exists():
        where = str(p)
        for n, f in _tsv_rows(p, 2, "tag line"):
            tid = _Checks.ident(f[0], "tag", where, n)
            if tid in tag_names:
                raise CatalogError(f"duplicate tag id {tid!r}", where, n)
            tag_names[tid] = " ".join(f[1].split()).lower()

    tag_counts: dict[str, Counter] = defaultdict(Counter)
    first_tagged: dict[tuple[str, str], float] = {}
    tag_rows_skipped = implausible_dates = 0
    p = folder / "user_taggedartists.dat"
    if p.exists():
        where = str(p)
        day_cache: dict[tuple[str, str, str], float | None] = {}
        for n, f in _tsv_rows(p, 6, "tagging line"):
            user, aid, tid = f[0].strip(), f[1].strip(), f[2].strip()
            if not user or not aid or not tid:
                raise CatalogError("empty userID, artistID or tagID", where, n)
            key = (f[3].strip(), f[4].strip(), f[5].strip())
            if key not in day_cache:
                d, m, y = (_Checks.integer(x, name, where, n) for x, name in zip(key, ("day", "month", "year")))
                try:
                    datetime(y, m, d)
                except ValueError:
                    raise CatalogError(f"invalid date {d}/{m}/{y}", where, n) from None
                ts = float(calendar.timegm((y, m, d, 0, 0, 0)))
                if ts > checks.latest:
                    raise CatalogError(f"tagging date {y}-{m:02d}-{d:02d} is in the future", where, n)
                day_cache[key] = ts if ts >= LASTFM_EARLIEST_PLAUSIBLE else None
            ts = day_cache[key]
            if aid not in artists or tid not in tag_names:
                tag_rows_skipped += 1
                continue
            if tag_names[tid]:
                tag_counts[aid][tag_names[tid]] += 1
            if ts is None:
                implausible_dates += 1
                continue
            prev = first_tagged.get((user, aid))
            if prev is None or ts < prev:
                first_tagged[(user, aid)] = ts

    items = [
        _make_item(str(folder / "artists.dat"), n, id=aid, title=name, kind="artist",
                   tags=_top(tag_counts.get(aid, Counter())), extra={"url": url} if url else {})
        for aid, (n, name, url) in artists.items()
    ]

    p = folder / "user_artists.dat"
    where = str(p)
    interactions: list[Interaction] = []
    seen: set[tuple[str, str]] = set()
    plays_skipped = 0
    skipped_artists: set[str] = set()
    for n, f in _tsv_rows(p, 3, "play line"):
        user, aid = f[0].strip(), f[1].strip()
        if not user or not aid:
            raise CatalogError("empty userID or artistID", where, n)
        count = _Checks.number(f[2], "play count", where, n, 0.0)
        if count != int(count):
            raise CatalogError(f"play count {f[2]!r} is not a whole number", where, n)
        if (user, aid) in seen:
            raise CatalogError(f"duplicate row for user {user!r} and artist {aid!r}", where, n)
        seen.add((user, aid))
        if aid not in artists:
            plays_skipped += 1
            skipped_artists.add(aid)
            continue
        interactions.append(_new_interaction(user=user, item=aid,
                                             timestamp=first_tagged.get((user, aid), 0.0),
                                             rating=None, weight=count, event="play"))
    if plays_skipped:
        warnings.warn(f"{p}: skipped {plays_skipped} play row(s) for {len(skipped_artists)} artist id(s) "
                      f"missing from artists.dat", DatasetWarning, stacklevel=2)
    cat = Catalog("lastfm-2k", items, interactions, source=str(folder))
    return _attach_stats(cat, {
        "items": len(items), "interactions": len(interactions),
        "plays_skipped_unknown_artist": plays_skipped,
        "tag_rows_skipped_unknown_artist_or_tag": tag_rows_skipped,
        "tag_dates_ignored_before_2002": implausible_dates,
        "interactions_without_timestamp": sum(1 for x in interactions if x.timestamp == 0.0),
    })


# ------------------------------------------------------------------------------------------
# generic JSONL / CSV
# ------------------------------------------------------------------------------------------

_ITEM_FIELDS = ("id", "title", "kind", "year", "genres", "tags", "description")
_INTERACTION_FIELDS = ("user", "item", "timestamp", "rating", "weight", "event")


def _format_of(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    first = next((ln.strip() for _, ln in _lines(text) if ln.strip()), "")
    return "jsonl" if first.startswith("{") else "csv"


def _jsonl_objects(text: str, where: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, line in _lines(text):
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
    item_id = _Checks.ident(rec["id"], "item", where, n)
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
    return _make_item(where, n, id=item_id, title=title, kind=kind, year=year,
                      genres=_split_list(rec.get("genres"), "genres", where, n),
                      tags=_split_list(rec.get("tags"), "tags", where, n),
                      description=desc.strip(), extra=extra)


def _generic_interaction(rec: dict[str, Any], items: dict[str, Item], checks: _Checks, where: str,
                         n: int) -> Interaction:
    for key in ("user", "item"):
        if key not in rec:
            raise CatalogError(f"missing {key!r}", where, n)
    user = _Checks.ident(rec["user"], "user", where, n)
    item = _Checks.ident(rec["item"], "item", where, n)
    if item not in items:
        raise CatalogError(f"unknown item {item!r} (not in the items file)", where, n)
    ts_raw = rec.get("timestamp")
    ts = 0.0 if ts_raw is None or ts_raw == "" else checks.timestamp(ts_raw, where, n)
    r_raw = rec.get("rating")
    rating = None if r_raw is None or r_raw == "" else _Checks.number(r_raw, "rating", where, n, 0.0)
    w_raw = rec.get("weight")
    weight = 1.0 if w_raw is None or w_raw == "" else _Checks.number(w_raw, "weight", where, n, 0.0)
    event = rec.get("event")
    if event is None or event == "":
        event = "rating" if rating is not None else "watch"
    if event not in EVENT_KINDS:
        raise CatalogError(f"unknown event {event!r} (one of: {', '.join(EVENT_KINDS)})", where, n)
    return _new_interaction(user=user, item=item, timestamp=ts, rating=rating, weight=weight,
                            event=event)


def _generic_records(path: Path, what: str, required: tuple[str, ...]
                     ) -> Iterator[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(line, known fields, extra fields) from a JSONL or CSV file (strict UTF-8)."""
    where = str(path)
    text = _decode_strict_utf8(_read_bytes(path), where)
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
            text = "\n".join(",".join(_csv_quote(c) for c in ln.split("\t")) for _, ln in _lines(text))
        header, rows = _csv_rows(text, where, required, what)
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
    items: dict[str, Item] = {}
    for n, rec, extra in _generic_records(ipath, "items", ("id", "title")):
        it = _generic_item(rec, extra, where, n)
        if it.id in items:
            raise CatalogError(f"duplicate item id {it.id!r}", where, n)
        items[it.id] = it
    if not items:
        raise CatalogError("no items", where)

    interactions: list[Interaction] = []
    if interactions_path is not None:
        xpath = Path(interactions_path)
        xwhere = str(xpath)
        checks = _Checks()
        for n, rec, _extra in _generic_records(xpath, "interactions", ("user", "item")):
            interactions.append(_generic_interaction(rec, items, checks, xwhere, n))
    if name is None:
        name = ipath.parent.name if ipath.stem in ("items", "catalog") and ipath.parent.name else ipath.stem
    return Catalog(name, items.values(), interactions, source=str(ipath))


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def write_generic(catalog: Catalog, items_path: PathLike, interactions_path: PathLike | None = None
                  ) -> None:
    """Write ``catalog`` in the generic format (JSONL, or CSV for a ``.csv`` suffix), so that
    :func:`load_generic` reads it back. In CSV, ``extra`` values become columns (as strings) and a
    "|" inside a genre or tag cannot be represented. Files are written atomically."""

    def atomic_write(path: Path, write: Callable[[io.TextIOBase], None]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
                write(fh)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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


# ------------------------------------------------------------------------------------------
# demo
# ------------------------------------------------------------------------------------------

def _demo_dir():
    from importlib.resources import files

    return files("mediarec.catalog") / "demo"


def load_demo() -> Catalog:
    """The small bundled demo catalog (``mediarec/catalog/demo/items.jsonl`` + ``interactions.jsonl``)."""
    from importlib.resources import as_file

    d = _demo_dir()
    items_res, inter_res = d / "items.jsonl", d / "interactions.jsonl"
    if not items_res.is_file():
        raise CatalogError("the bundled demo data is missing from this installation (reinstall mediarec)",
                           str(items_res))
    with as_file(items_res) as ip:
        if inter_res.is_file():
            with as_file(inter_res) as xp:
                return load_generic(ip, xp, name="demo")
        return load_generic(ip, None, name="demo")


# ------------------------------------------------------------------------------------------
# registry
# ------------------------------------------------------------------------------------------

def _has(*names: str) -> Callable[[Path], bool]:
    return lambda p: all((p / n).is_file() for n in names)


def _latest_present(p: Path) -> bool:
    if p.is_file():
        return p.suffix.lower() == ".zip"
    return ((p / "movies.csv").is_file() and (p / "ratings.csv").is_file()) or \
        (p / "ml-latest-small.zip").is_file()


@dataclass(frozen=True)
class DatasetInfo:
    """One loadable dataset: where it lives under a data dir and where it comes from."""

    name: str
    loader: Callable[..., Catalog]
    description: str
    folder: str | None = None          # folder name under data_dir
    url: str | None = None             # the publisher's archive
    sha256: str | None = None          # pinned archive digest; None = record and print it
    aliases: tuple[str, ...] = ()
    present: Callable[[Path], bool] = field(default=lambda p: False, repr=False)
    licence: str = ""

    @property
    def archive(self) -> str | None:
        return self.url.rsplit("/", 1)[-1] if self.url else None


_GL = "https://files.grouplens.org/datasets"

DATASETS: dict[str, DatasetInfo] = {
    "demo": DatasetInfo(
        name="demo", loader=lambda path=None: load_demo(),
        description="a small bundled catalog of films, series and music for trying mediarec out"),
    "movielens-100k": DatasetInfo(
        name="movielens-100k", loader=load_movielens_100k, folder="ml-100k",
        url=f"{_GL}/movielens/ml-100k.zip", sha256=None, aliases=("ml-100k",),
        present=_has("u.data", "u.item"),
        description="MovieLens 100k: 100,000 ratings by 943 users of 1,682 movies (1998)",
        licence="GroupLens research licence; no redistribution"),
    "movielens-latest-small": DatasetInfo(
        name="movielens-latest-small", loader=load_movielens_latest_small, folder="ml-latest-small",
        url=f"{_GL}/movielens/ml-latest-small.zip",
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        aliases=("ml-latest-small",), present=_latest_present,
        description="MovieLens latest-small: 100,836 ratings and 3,683 tags by 610 users of 9,742 movies",
        licence="GroupLens research licence; cite Harper & Konstan 2015"),
    "lastfm-2k": DatasetInfo(
        name="lastfm-2k", loader=load_lastfm_2k, folder="hetrec2011-lastfm-2k",
        url=f"{_GL}/hetrec2011/hetrec2011-lastfm-2k.zip", sha256=None,
        aliases=("hetrec2011-lastfm-2k",), present=_has("artists.dat", "user_artists.dat"),
        description="Last.fm hetrec-2k: play counts of 17,632 artists by 1,892 users, with tags",
        licence="non-commercial; cite Last.fm and HetRec'11"),
}


def resolve_dataset_name(name: str) -> DatasetInfo:
    """The dataset called ``name`` or one of its aliases (case-insensitive)."""
    key = str(name).strip().lower()
    for info in DATASETS.values():
        if key == info.name or key in info.aliases:
            return info
    known = ", ".join(f"{i.name}" + (f" ({', '.join(i.aliases)})" if i.aliases else "")
                      for i in DATASETS.values())
    raise CatalogError(f"unknown dataset {name!r}; known: {known}")


def _data_dir(data_dir: PathLike | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else get_settings().data_dir


def dataset_path(name: str, data_dir: PathLike | None = None) -> Path:
    """Where dataset ``name`` is: ``data_dir/<folder>`` or ``data_dir`` itself if that is the
    dataset's own folder. Missing files are an error that says how to get them."""
    info = resolve_dataset_name(name)
    if info.folder is None:
        return Path(str(_demo_dir()))
    base = _data_dir(data_dir)
    for cand in (base / info.folder, base):
        if info.present(cand):
            return cand
    raise CatalogError(
        f"dataset {info.name!r} not found (looked in {base / info.folder} and {base}); "
        f"run `mediarec data fetch {info.name}` or pass --data-dir pointing at the folder that holds "
        f"{info.folder}/")


def load_dataset(name: str, data_dir: PathLike | None = None) -> Catalog:
    """Load a registered dataset by name or alias (see :data:`DATASETS`)."""
    info = resolve_dataset_name(name)
    if info.folder is None:
        return load_demo()
    return info.loader(dataset_path(info.name, data_dir))


# ------------------------------------------------------------------------------------------
# fetching
# ------------------------------------------------------------------------------------------

def _local_source(src: str) -> Path | None:
    """A local path for a file:// URL or a plain path; None for a remote URL."""
    parsed = urllib.parse.urlparse(src)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("", ) or (len(parsed.scheme) == 1 and os.name == "nt"):
        return Path(src).expanduser()
    return None


def _download(src: str, tmp_file, progress: bool | None, label: str) -> str:
    """Copy ``src`` (URL or local file) into the open ``tmp_file``; return the sha256 hex digest."""
    h = hashlib.sha256()
    local = _local_source(src)
    try:
        if local is not None:
            if not local.is_file():
                raise CatalogError("not found (expected the dataset's zip archive or folder)", local)
            stream = open(local, "rb")
            total = local.stat().st_size
        else:
            req = urllib.request.Request(src, headers={"User-Agent": "mediarec"})
            stream = urllib.request.urlopen(req, timeout=60)
            total = int(stream.headers.get("Content-Length") or 0) or None
    except CatalogError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CatalogError(f"cannot download {src}: {reason}; download it by hand and pass it with "
                           f"--url or --data-dir") from None
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        with stream, transfer(progress, label, total) as advance:
            while True:
                chunk = stream.read(1 << 16)
                if not chunk:
                    break
                h.update(chunk)
                tmp_file.write(chunk)
                advance(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        raise CatalogError(f"download of {src} failed: {getattr(e, 'reason', None) or e}") from None
    return h.hexdigest()


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
        return Path(str(_demo_dir()))
    dest = _data_dir(dest_dir)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CatalogError(f"cannot create the data folder: {e.strerror or e}", dest) from None
    final = dest / info.folder
    src = url or info.url
    assert src is not None and info.archive is not None

    local = _local_source(src)
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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{info.archive}.", suffix=".part", dir=dest)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            digest = _download(src, fh, progress, f"{info.name}")
        if info.sha256 and digest != info.sha256:
            raise CatalogError(f"sha256 mismatch: expected {info.sha256}, got {digest}; the download is "
                               f"corrupt or the publisher changed the file", src)
        try:
            with zipfile.ZipFile(tmp) as zf:
                bad = zf.testzip()
                if bad is not None:
                    raise CatalogError(f"corrupt archive (bad CRC in {bad}); fetch it again", src)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as e:
            raise CatalogError(f"not a valid zip archive ({e}); the download is truncated or "
                               f"corrupt, fetch it again", src) from None
        os.replace(tmp, archive)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

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
