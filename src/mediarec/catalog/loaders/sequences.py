"""Sequence files, the form SASRec, BERT4Rec and LRURec publish their preprocessed data in.

Two layouts, told apart by the first non-empty line:

- one user a line, ``user<TAB>item item …``, oldest first (LRURec's ``lrurec-sequences.tsv``);
- one interaction a line, ``user item`` (whitespace-separated), each user's lines oldest first
  (SASRec's ``ml-1m.txt``).

Such files carry no timestamps: the order is the only time there is. A catalog built from one
stamps each user's interactions 0, 1, 2, … so every split that sorts by time keeps that order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mediarec.catalog.model import Catalog, Item
from mediarec.catalog.validate import (
    PathLike,
    decode_lenient,
    lines,
    make_item,
    new_interaction,
    read_bytes,
)
from mediarec.errors import CatalogError


def read_sequences(path: PathLike) -> dict[str, list[str]]:
    """{user: [item, …] oldest first}, in file order. Malformed lines are a CatalogError naming
    the file and line."""
    path = Path(path)
    where = str(path)
    text = decode_lenient(read_bytes(path))
    seqs: dict[str, list[str]] = {}
    layout: str | None = None
    for n, raw in lines(text):
        if not raw.strip():
            continue
        if layout is None:
            layout = "tab" if "\t" in raw else "pairs"
        if layout == "tab":
            if "\t" not in raw:
                raise CatalogError("expected 'user<TAB>item item ...' (no tab on this line)", where, n)
            user, rest = raw.split("\t", 1)
            user = user.strip()
            items = rest.split()
            if not user:
                raise CatalogError("empty user id before the tab", where, n)
            if not items:
                raise CatalogError(f"user {user!r} has no items after the tab", where, n)
            if user in seqs:
                raise CatalogError(f"user {user!r} has a second line (one line per user)", where, n)
            seqs[user] = items
        else:
            f = raw.split()
            if len(f) != 2:
                raise CatalogError(f"expected 'user item' (2 fields), found {len(f)}", where, n)
            seqs.setdefault(f[0], []).append(f[1])
    if not seqs:
        raise CatalogError("no sequences (the file is empty)", where)
    return seqs


def sequence_catalog(name: str, seqs: Mapping[str, list[str]], items: Mapping[str, Item] | None = None,
                     source: str | None = None) -> Catalog:
    """A catalog of ``seqs``: event "watch", timestamp = position in the user's sequence. Items are
    those the sequences name, taken from ``items`` where given (an item missing there is an error),
    otherwise titled "item <id>"."""
    used: dict[str, Item] = {}
    log = []
    for user, seq in seqs.items():
        for t, item in enumerate(seq):
            if item not in used:
                if items is not None:
                    if item not in items:
                        raise CatalogError(f"user {user!r}: item {item!r} is not in the item file", source)
                    used[item] = items[item]
                else:
                    used[item] = make_item(source or name, 0, id=item, title=f"item {item}")
            log.append(new_interaction(user=user, item=item, timestamp=float(t), rating=None, weight=1.0,
                                       event="watch"))
    ordered = sorted(used.values(), key=lambda it: (0, int(it.id), "") if it.id.isdigit() else (1, 0, it.id))
    return Catalog(name, ordered, log, source=source or name,
                   load_stats={"items": len(ordered), "interactions": len(log), "users": len(seqs)})


def load_sequences(path: PathLike) -> Catalog:
    """A catalog of a sequence file alone (items titled by id)."""
    path = Path(path)
    return sequence_catalog(path.stem, read_sequences(path), source=str(path))
