"""Reading and checking rows, shared by every loader: decoding, line splitting, CSV headers,
field checks (ids, numbers, timestamps) and the errors that name the file and the 1-based line.

A loader reads and checks all rows with these helpers first and builds the
:class:`~mediarec.catalog.model.Catalog` last, so bad input never yields a half-loaded catalog.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, get_args

from pydantic import ValidationError

from mediarec.catalog.model import EventKind, Interaction, Item, ItemKind
from mediarec.errors import CatalogError

PathLike = str | os.PathLike

ITEM_KINDS: tuple[str, ...] = get_args(ItemKind)
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)

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

new_interaction = _interaction_factory()

class DatasetWarning(UserWarning):
    """A loader skipped rows it could not use (the count is in the message and in ``load_stats``)."""

def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CatalogError("file not found", path) from None
    except IsADirectoryError:
        raise CatalogError("is a folder, expected a file", path) from None
    except OSError as e:
        raise CatalogError(f"cannot read: {e.strerror or e}", path) from None

def decode_strict_utf8(data: bytes, where: str) -> str:
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

def decode_lenient(data: bytes) -> str:
    """UTF-8 if the whole file is valid UTF-8, otherwise latin-1 (which decodes any byte)."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")

def lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its CR/LF). Splits on "\\n" only: str.splitlines would
    also split on U+0085 and friends, which latin-1 text can contain."""
    for n, line in enumerate(text.split("\n"), 1):
        yield n, line.rstrip("\r")

def split_fields(line: str, sep: str, expected: int | tuple[int, int], where: str, n: int,
                  what: str) -> list[str]:
    fields = line.split(sep)
    lo, hi = (expected, expected) if isinstance(expected, int) else expected
    if not lo <= len(fields) <= hi:
        want = str(lo) if lo == hi else f"{lo} to {hi}"
        sep_name = {"\t": "tab", "|": "'|'", ",": "comma"}.get(sep, repr(sep))
        raise CatalogError(f"{what}: expected {want} {sep_name}-separated fields, found {len(fields)}",
                           where, n)
    return fields

def csv_rows(text: str, where: str, required: Iterable[str], what: str
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

class Checks:
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

def validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())) or "value"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)

def make_item(where: str, n: int, **fields: Any) -> Item:
    try:
        return Item(**fields)
    except ValidationError as e:
        raise CatalogError(f"bad item: {validation_message(e)}", where, n) from None

def top_counts(counter: Counter, k: int = 10) -> tuple[str, ...]:
    """The k most frequent values, ties alphabetical (an item's tags from many users' taggings)."""
    return tuple(v for v, _ in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:k])

