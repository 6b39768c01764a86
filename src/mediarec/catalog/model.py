"""Items, interactions and the catalog that holds both: the one shape every loader produces.

A catalog is validated as a whole before anything downstream sees it, so a half-loaded
file can never reach the index.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import defaultdict
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mediarec.errors import CatalogError, UnknownItemError, UnknownUserError

ItemKind = Literal["movie", "series", "track", "album", "artist", "video", "other"]
EventKind = Literal["watch", "rating", "like", "dislike", "favourite", "play"]


class Item(BaseModel):
    """One film, series, track, album or artist."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    kind: ItemKind = "movie"
    year: int | None = None
    genres: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str = ""
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id", mode="before")
    @classmethod
    def _id_to_str(cls, v: Any) -> str:
        v = str(v).strip()
        if not v:
            raise ValueError("empty item id")
        return v

    @field_validator("title")
    @classmethod
    def _title_not_empty(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("empty title")
        return v

    @property
    def label(self) -> str:
        """Title with the year, as people say it: "Alien (1979)"."""
        if self.year and not re.search(r"\(\d{4}\)\s*$", self.title):
            return f"{self.title} ({self.year})"
        return self.title

    def text(self, max_chars: int = 1000) -> str:
        """The text that is embedded: label, kind, genres, tags, description (capped)."""
        parts = [self.label, f"{self.kind}"]
        if self.genres:
            parts.append("genres: " + ", ".join(self.genres))
        if self.tags:
            parts.append("tags: " + ", ".join(self.tags[:20]))
        if self.description:
            parts.append(self.description)
        return ". ".join(parts)[:max_chars]


class Interaction(BaseModel):
    """A user consumed (or rated, liked, played) an item at a time."""

    model_config = ConfigDict(frozen=True)

    user: str
    item: str
    timestamp: float = 0.0
    rating: float | None = None
    weight: float = 1.0
    event: EventKind = "watch"

    @field_validator("user", "item", mode="before")
    @classmethod
    def _to_str(cls, v: Any) -> str:
        v = str(v).strip()
        if not v:
            raise ValueError("empty id")
        return v


_ARTICLES = re.compile(r"^(the|a|an|le|la|les|il|el|der|die|das)\s+", re.I)
_TRAILING_ARTICLE = re.compile(r",\s*(the|a|an|le|la|les|il|el|der|die|das)$", re.I)
_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")


def normalize_title(title: str) -> tuple[str, int | None]:
    """Case-, accent- and article-insensitive key of a title, and the year if it carried one.

    "The Matrix (1999)", "matrix", "Matrix, The" all give ("matrix", 1999 or None).
    """
    t = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode() or title
    year = None
    m = _YEAR.search(t)
    if m:
        year = int(m.group(1))
        t = t[: m.start()]
    t = t.strip().lower()
    t = _TRAILING_ARTICLE.sub("", t)
    t = _ARTICLES.sub("", t)
    t = re.sub(r"[^\w]+", " ", t).strip()
    return t, year


class Catalog:
    """Items by id plus the interaction log, validated together."""

    def __init__(self, name: str, items: Iterable[Item], interactions: Iterable[Interaction] = (),
                 source: str | None = None):
        self.name = name
        self.source = source or name
        self.items: dict[str, Item] = {}
        for it in items:
            if it.id in self.items:
                raise CatalogError(f"duplicate item id {it.id!r}", self.source)
            self.items[it.id] = it
        self.interactions: list[Interaction] = list(interactions)
        unknown = {x.item for x in self.interactions if x.item not in self.items}
        if unknown:
            sample = ", ".join(sorted(unknown)[:5])
            raise CatalogError(
                f"{len(unknown)} item id(s) in the interactions are not in the catalog (e.g. {sample})",
                self.source)
        self._by_user: dict[str, list[Interaction]] | None = None
        self._title_index: dict[str, list[str]] | None = None
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Catalog({self.name!r}, {len(self.items)} items, {len(self.interactions)} interactions)"

    # -- users -----------------------------------------------------------------------------
    @property
    def by_user(self) -> dict[str, list[Interaction]]:
        """Each user's interactions, oldest first (ties keep file order)."""
        if self._by_user is None:
            d: dict[str, list[Interaction]] = defaultdict(list)
            for x in self.interactions:
                d[x.user].append(x)
            for lst in d.values():
                lst.sort(key=lambda x: x.timestamp)
            self._by_user = dict(d)
        return self._by_user

    def users(self) -> list[str]:
        return list(self.by_user)

    def history(self, user: str) -> list[Interaction]:
        """A user's interactions, oldest first; an unknown user is an error that says so."""
        try:
            return self.by_user[str(user)]
        except KeyError:
            raise UnknownUserError(
                f"unknown user {user!r} in catalog {self.name!r} ({len(self.by_user)} users)") from None

    # -- items -----------------------------------------------------------------------------
    def item(self, item_id: str) -> Item:
        try:
            return self.items[str(item_id)]
        except KeyError:
            raise UnknownItemError(f"unknown item id {item_id!r} in catalog {self.name!r}") from None

    @property
    def title_index(self) -> dict[str, list[str]]:
        if self._title_index is None:
            idx: dict[str, list[str]] = defaultdict(list)
            for it in self.items.values():
                idx[normalize_title(it.title)[0]].append(it.id)
            self._title_index = dict(idx)
        return self._title_index

    def find_titles(self, query: str) -> list[Item]:
        """Items whose title matches forgivingly (case, accents, articles, optional year)."""
        key, year = normalize_title(query)
        if not key:
            return []
        hits = [self.items[i] for i in self.title_index.get(key, [])]
        if not hits:  # fall back to a prefix match ("blade runner" -> "blade runner 2049" is ambiguous)
            hits = [self.items[i] for k, ids in self.title_index.items() if k.startswith(key) for i in ids]
        if year is not None:
            exact = [it for it in hits if it.year == year or f"({year})" in it.title]
            hits = exact or hits
        return hits

    def resolve(self, ref: str) -> Item:
        """An item id or a title; an unknown or ambiguous one is an error that says which."""
        ref = str(ref).strip()
        if ref in self.items:
            return self.items[ref]
        hits = self.find_titles(ref)
        if not hits:
            raise UnknownItemError(f"no item titled {ref!r} in catalog {self.name!r}")
        if len(hits) > 1:
            # An exact title match wins over prefix matches.
            key, _ = normalize_title(ref)
            exact = [h for h in hits if normalize_title(h.title)[0] == key]
            if len(exact) == 1:
                return exact[0]
            labels = [h.label for h in hits[:6]]
            # Same title and year (an album and its title track): tell them apart by kind and id.
            options = "; ".join(f"{h.label} [{h.kind} {h.id}]" if labels.count(h.label) > 1 else h.label
                                for h in hits[:6])
            raise UnknownItemError(f"{ref!r} is ambiguous in catalog {self.name!r}: {options}")
        return hits[0]

    # -- identity --------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 over items and interactions: an index built from another catalog is stale."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for it in self.items.values():
                h.update(json.dumps(it.model_dump(mode="json"), sort_keys=True).encode())
            for x in self.interactions:
                h.update(f"{x.user}\t{x.item}\t{x.timestamp}\t{x.rating}\t{x.weight}\n".encode())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def items_fingerprint(self) -> str:
        """sha256 over the items only (what the text index depends on)."""
        h = hashlib.sha256()
        for it in self.items.values():
            h.update(json.dumps(it.model_dump(mode="json"), sort_keys=True).encode())
        return h.hexdigest()

    def with_interactions(self, interactions: Iterable[Interaction]) -> "Catalog":
        """The same items with another interaction log (a training split, a session's feedback)."""
        c = Catalog.__new__(Catalog)
        c.name, c.source, c.items = self.name, self.source, self.items
        c.interactions = list(interactions)
        c._by_user = c._title_index = c._fingerprint = None
        c._title_index = self._title_index
        return c
