"""Items, interactions and the catalog that holds both: the one shape every loader produces.

A catalog is validated as a whole before anything downstream sees it, so a half-loaded
file can never reach the index.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections import defaultdict
from types import MappingProxyType
from typing import Any, Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mediarec.catalog.titles import normalize_title
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

    @property
    def is_positive(self) -> bool:
        """What the event alone says: every event but ``dislike`` is consumption a model may learn from.

        Whether the user *liked* it also depends on their other ratings (a low rating is a weak
        negative): that is :func:`liked_flags`. A disliked item is still "seen" (never recommended back)."""
        return self.event != "dislike"


HistoryEntry = Interaction | Item | str

#: How much a low rating pushes away, against a ``dislike`` (1): a weak negative.
WEAK_NEGATIVE = 0.5
#: Events that say "liked" whatever rating they carry.
_LIKED_EVENTS = frozenset({"like", "favourite"})


#: Names the definition of "liked" below: stored models whose features depend on it (the learned
#: stage's) are retrained when it changes.
LIKED_RULE = "not a dislike; rating >= own midpoint when ratings spread over 40% of the highest"

#: A user's ratings must span at least this share of their highest rating to have a midpoint:
#: someone who rates only 4s and 5s (of 5) liked all of it, and a 4 is no negative.
MIN_SPREAD = 0.4


def rating_midpoint(ratings: Iterable[float]) -> float | None:
    """Halfway between a user's lowest and highest rating: their own scale's middle (a 3 is low
    for someone who rates 3 to 5, not for someone who rates 1 to 5). None without ratings, or when
    they span less than :data:`MIN_SPREAD` of the highest (then nothing they rated is low)."""
    rs = [float(r) for r in ratings]
    if not rs or max(rs) - min(rs) < MIN_SPREAD * abs(max(rs)):
        return None
    return (min(rs) + max(rs)) / 2


def liked_flags(interactions: Sequence[Interaction]) -> list[bool]:
    """Whether each interaction says the user liked the item: the one definition of "liked".

    Not a ``dislike``, and not a low rating: a rating below the user's own midpoint
    (:func:`rating_midpoint` over that user's ratings among ``interactions``) is a weak negative,
    seen but not liked (a user whose ratings barely spread has none); ``like`` and ``favourite``
    events are liked whatever their rating. Each
    user's midpoint comes from the interactions given (a whole log, or one history), so a history
    prefix never sees its own later ratings."""
    ratings: dict[str, list[float]] = defaultdict(list)
    for x in interactions:
        if x.rating is not None and x.event not in _LIKED_EVENTS:
            ratings[x.user].append(x.rating)
    mid = {u: rating_midpoint(rs) for u, rs in ratings.items()}
    return [x.is_positive and not (x.rating is not None and x.event not in _LIKED_EVENTS
                                   and mid[x.user] is not None and x.rating < mid[x.user])
            for x in interactions]


#: Events whose ``weight`` is a strength (play counts, watch time): :meth:`Catalog.history_strengths`.
STRENGTH_EVENTS = frozenset({"play", "watch"})


#: Whether models (the collaborative fit, query vectors, the learned stage's targets) learn from low
#: ratings as consumption. Measured on MovieLens 100k validation users (docs/architecture.md,
#: "Negatives"): hybrid NDCG@10 0.1228 learning from them, 0.1103 without them; what a person rates
#: low still says what they watch next. So they are "seen, not liked": models learn from them,
#: every "liked" (evidence, profiles, counts, reasons) leaves them out. As negatives they pushed
#: nothing measurable either way (retrieval's ``low_rating_push``, the learned stage's
#: ``LOW_RATING_FEATURE_WEIGHT``: both 0), so only dislikes push away.
MODELS_LEARN_FROM_LOW_RATINGS = True


def model_flags(interactions: Sequence[Interaction]) -> list[bool]:
    """Whether each interaction is one models learn from and build query vectors from: never a
    ``dislike``; a low rating only while :data:`MODELS_LEARN_FROM_LOW_RATINGS`."""
    if MODELS_LEARN_FROM_LOW_RATINGS:
        return [x.is_positive for x in interactions]
    return liked_flags(interactions)


def pair_flags(pairs: Sequence[tuple[Item, Interaction | None]], *, liked: bool = True) -> list[bool]:
    """:func:`liked_flags` (or, ``liked=False``, :func:`model_flags`) of (item, interaction or None)
    pairs, as histories are given; a bare item counts as liked."""
    xs = [x for _, x in pairs if x is not None]
    flags = iter(liked_flags(xs) if liked else model_flags(xs))
    return [True if x is None else next(flags) for _, x in pairs]


def pair_liked(pairs: Sequence[tuple[Item, Interaction | None]]) -> list[bool]:
    """Whether the user liked each (item, interaction or None) pair (:func:`liked_flags`)."""
    return pair_flags(pairs, liked=True)


def negative_weight(x: Interaction, liked: bool) -> float:
    """How strongly an interaction pushes away from its item: 1 for a ``dislike``,
    :data:`WEAK_NEGATIVE` for a low rating, 0 for a liked one."""
    if liked:
        return 0.0
    return 1.0 if x.event == "dislike" else WEAK_NEGATIVE


_UNCHANGED: Any = object()


#: A catalogue whose log replays items this often (events of an item the user had before, of all
#: events) allows them back by default (issue 28): a music or series log. The same share makes
#: ``eval`` warn that its targets are repeats.
REPEAT_POLICY_SHARE = 0.10


def repeat_share(catalog: "Catalog") -> float:
    """The share of a log's events that replay an item the same user had before (0 for an empty log)."""
    n = repeats = 0
    for hist in catalog.by_user.values():
        had: set[str] = set()
        for x in hist:
            repeats += x.item in had
            had.add(x.item)
        n += len(hist)
    return repeats / n if n else 0.0


def repeat_policy(catalog: "Catalog") -> Literal["allow", "exclude"]:
    """Whether liked items already consumed may come back by default: a loader's choice
    (``load_stats["repeat_policy"]``), else "allow" where the log itself replays (more than
    :data:`REPEAT_POLICY_SHARE` of its events). A play-count log with one row per user and item (Last.fm
    hetrec) shows no replays, so it excludes: nothing in it says when people play an artist again."""
    given = catalog.load_stats.get("repeat_policy")
    if given in ("allow", "exclude"):
        return given
    return "allow" if repeat_share(catalog) > REPEAT_POLICY_SHARE else "exclude"


class Catalog:
    """Items by id plus the interaction log, validated together.

    Immutable: ``items`` is a read-only mapping, ``interactions`` a tuple, and nothing is set after
    construction, so an index or a split built from a catalog can trust it. Derive a new one with
    :meth:`replace` or :meth:`extend`; what still holds (the title index when the items are the
    same, the per-user histories when the log is) is carried over, so a training split is cheap.
    """

    __slots__ = ("name", "source", "items", "interactions", "load_stats", "summarised_items",
                 "_by_user", "_title_index", "_fingerprint", "_positives", "_liked_by", "_last_pairs",
                 "__weakref__")

    name: str
    source: str
    items: Mapping[str, Item]
    interactions: tuple[Interaction, ...]
    load_stats: Mapping[str, Any]
    summarised_items: int

    def __init__(self, name: str, items: Iterable[Item], interactions: Iterable[Interaction] = (),
                 source: str | None = None, *, load_stats: Mapping[str, Any] | None = None,
                 summarised_items: int = 0):
        """``load_stats``: what a loader read and skipped; ``summarised_items``: how many items carry
        an LLM-written summary as their description (see :func:`mediarec.catalog.enrich.apply_summaries`)."""
        source = source or name
        by_id: dict[str, Item] = {}
        for it in items:
            if it.id in by_id:
                raise CatalogError(f"duplicate item id {it.id!r}", source)
            by_id[it.id] = it
        log = tuple(interactions)
        unknown = {x.item for x in log if x.item not in by_id}
        if unknown:
            sample = ", ".join(sorted(unknown)[:5])
            raise CatalogError(
                f"{len(unknown)} item id(s) in the interactions are not in the catalog (e.g. {sample})", source)
        init = object.__setattr__
        init(self, "name", name)
        init(self, "source", source)
        init(self, "items", MappingProxyType(by_id))
        init(self, "interactions", log)
        init(self, "load_stats", MappingProxyType(dict(load_stats or {})))
        init(self, "summarised_items", int(summarised_items))
        for cache in ("_by_user", "_title_index", "_fingerprint", "_positives", "_liked_by", "_last_pairs"):
            init(self, cache, None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Catalog is immutable (use replace() or extend() to derive one), cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Catalog is immutable, cannot delete {name!r}")

    def _cache(self, name: str, value: Any) -> Any:
        object.__setattr__(self, name, value)
        return value

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"Catalog({self.name!r}, {len(self.items)} items, {len(self.interactions)} interactions)"

    # -- deriving --------------------------------------------------------------------------
    def replace(self, *, name: str = _UNCHANGED, items: Iterable[Item] = _UNCHANGED,
                interactions: Iterable[Interaction] = _UNCHANGED, source: str = _UNCHANGED,
                load_stats: Mapping[str, Any] | None = _UNCHANGED, summarised_items: int = _UNCHANGED) -> "Catalog":
        """A new, validated catalog with the given fields replaced (a training split, an enriched copy)."""
        same_items = items is _UNCHANGED
        same_log = interactions is _UNCHANGED
        new = Catalog(
            self.name if name is _UNCHANGED else name,
            self.items.values() if same_items else items,
            self.interactions if same_log else interactions,
            self.source if source is _UNCHANGED else source,
            load_stats=self.load_stats if load_stats is _UNCHANGED else load_stats,
            summarised_items=self.summarised_items if summarised_items is _UNCHANGED else summarised_items,
        )
        titles_same = same_items or (new.items.keys() == self.items.keys() and all(
            it.title == self.items[i].title for i, it in new.items.items()))
        if titles_same:
            new._cache("_title_index", self._title_index)
        if same_log:
            new._cache("_by_user", self._by_user)
            new._cache("_positives", self._positives)
            if same_items:
                new._cache("_fingerprint", self._fingerprint)
        return new

    def extend(self, *, items: Iterable[Item] = (), interactions: Iterable[Interaction] = ()) -> "Catalog":
        """This catalog plus new items and interactions (a session's feedback); an item id that is
        already here is an error, as in the constructor."""
        items, interactions = tuple(items), tuple(interactions)
        return self.replace(
            items=(*self.items.values(), *items) if items else _UNCHANGED,
            interactions=(*self.interactions, *interactions) if interactions else _UNCHANGED)

    # -- users -----------------------------------------------------------------------------
    @property
    def by_user(self) -> Mapping[str, tuple[Interaction, ...]]:
        """Each user's interactions, oldest first (ties keep file order)."""
        if self._by_user is None:
            d: dict[str, list[Interaction]] = defaultdict(list)
            for x in self.interactions:
                d[x.user].append(x)
            self._cache("_by_user", MappingProxyType(
                {u: tuple(sorted(lst, key=lambda x: x.timestamp)) for u, lst in d.items()}))
        return self._by_user

    @property
    def positives(self) -> tuple[Interaction, ...]:
        """The interactions every model learns from (:func:`model_flags`: never a dislike)."""
        if self._positives is None:
            self._cache("_positives", tuple(x for x, ok in zip(self.interactions, model_flags(self.interactions))
                                            if ok))
        return self._positives

    @property
    def liked(self) -> tuple[Interaction, ...]:
        """The interactions that say the user liked the item (:func:`liked_flags`: no dislike, no
        rating below the user's midpoint): what every count of "liked" counts."""
        return tuple(x for x, ok in zip(self.interactions, liked_flags(self.interactions)) if ok)

    def liked_by(self, item_id: str) -> frozenset[str]:
        """The users who liked ``item_id`` (:attr:`liked`): what "people who liked Y" and "N users
        liked it" count. The map is built once per catalog."""
        if self._liked_by is None:
            users: dict[str, set[str]] = {}
            for x in self.liked:
                users.setdefault(x.item, set()).add(x.user)
            self._cache("_liked_by", MappingProxyType({i: frozenset(u) for i, u in users.items()}))
        return self._liked_by.get(item_id, frozenset())

    def liked_history(self, user: str) -> list[Interaction]:
        """A user's liked interactions, oldest first (see :attr:`liked`)."""
        hist = self.history(user)
        return [x for x, ok in zip(hist, liked_flags(hist)) if ok]

    def users(self) -> list[str]:
        return list(self.by_user)

    def history(self, user: str) -> list[Interaction]:
        """A user's interactions, oldest first; an unknown user is an error that says so."""
        try:
            return list(self.by_user[str(user)])
        except KeyError:
            import difflib

            near = difflib.get_close_matches(str(user), list(self.by_user), n=3) or list(self.by_user)[:3]
            hint = f", e.g. {', '.join(near)}" if near else ""
            raise UnknownUserError(
                f"unknown user {user!r} in catalog {self.name!r} ({len(self.by_user)} users{hint}); "
                "a history of titles can be given instead of a user") from None

    def history_pairs(self, history: Iterable[HistoryEntry]) -> list[tuple[Item, Interaction | None]]:
        """(item, interaction or None) per entry of a history given as interactions, items, ids or
        titles, oldest first: what prompts and profiles are built from. Unknown ones are an error.

        The last history read is remembered, entry by entry (the same objects, so nothing can have
        changed): scoring one history asks for its pairs five times (retrieval, the learned stage's
        features, its negatives), a tenth of the learned stage's training time on MovieLens 100k."""
        return list(self._read(history)[1])

    def _read(self, history: Iterable[HistoryEntry]) -> tuple[tuple, tuple, dict[bool, list[bool]]]:
        """(entries, pairs, flags by ``liked``) of a history, the last one remembered (see
        :meth:`history_pairs`); the flags (:func:`pair_flags`) are filled in as they are asked for."""
        entries = tuple(history)
        last = self._last_pairs  # one read: another thread may replace it meanwhile
        if last is not None and len(last[0]) == len(entries) and all(map(operator.is_, last[0], entries)):
            return last
        pairs: list[tuple[Item, Interaction | None]] = []
        for h in entries:
            if isinstance(h, Interaction):
                pairs.append((self.item(h.item), h))
            elif isinstance(h, Item):
                pairs.append((h, None))
            else:
                pairs.append((self.resolve(str(h)), None))
        return self._cache("_last_pairs", (entries, tuple(pairs), {}))

    def _flags(self, history: Iterable[HistoryEntry], liked: bool) -> tuple[tuple, list[bool]]:
        """(pairs, :func:`pair_flags` of them) of a history, both remembered with the last history."""
        _, pairs, flags = self._read(history)
        if liked not in flags:
            flags[liked] = pair_flags(pairs, liked=liked)
        return pairs, flags[liked]

    def history_ids(self, history: Iterable[HistoryEntry], *, positives_only: bool = False) -> list[str]:
        """Item ids of a history (see :meth:`history_pairs`).

        ``positives_only``: only what models build a query vector from (:func:`model_flags`: no
        dislike; an item or title without an interaction counts); the full list is what they have seen."""
        if not positives_only:
            return [it.id for it, _ in self._read(history)[1]]
        pairs, flags = self._flags(history, liked=False)
        return [it.id for (it, _), ok in zip(pairs, flags) if ok]


    def history_strengths(self, history: Iterable[HistoryEntry]) -> list[float | None]:
        """The strength of each entry of ``history_ids(history, positives_only=True)``: the ``weight``
        of a play or watch (:data:`STRENGTH_EVENTS`), None for other entries (a like, a rating, a bare item)."""
        pairs, flags = self._flags(history, liked=False)
        return [x.weight if x is not None and x.event in STRENGTH_EVENTS else None
                for (_, x), ok in zip(pairs, flags) if ok]

    def history_negatives(self, history: Iterable[HistoryEntry], weak: float = WEAK_NEGATIVE
                          ) -> list[tuple[str, float]]:
        """(item id, weight) of what a history pushes away from, oldest first: disliked items
        (weight 1) and low-rated ones (``weak``; 0 leaves them out); see :func:`negative_weight`."""
        pairs, liked = self._flags(history, liked=True)
        out = [(it.id, negative_weight(x, ok)) for (it, x), ok in zip(pairs, liked) if x is not None and not ok]
        return [(i, w if w == 1.0 else weak) for i, w in out if w == 1.0 or weak > 0]

    # -- items -----------------------------------------------------------------------------
    def item(self, item_id: str) -> Item:
        try:
            return self.items[str(item_id)]
        except KeyError:
            raise UnknownItemError(f"unknown item id {item_id!r} in catalog {self.name!r}") from None

    @property
    def title_index(self) -> Mapping[str, tuple[str, ...]]:
        """Matching key (:func:`~mediarec.catalog.titles.normalize_title`) -> item ids."""
        if self._title_index is None:
            idx: dict[str, list[str]] = defaultdict(list)
            for it in self.items.values():
                idx[normalize_title(it.title)[0]].append(it.id)
            self._cache("_title_index", MappingProxyType({k: tuple(v) for k, v in idx.items()}))
        return self._title_index

    def find_titles(self, query: str) -> list[Item]:
        """Items whose title matches forgivingly (case, accents, articles, optional year)."""
        key, year = normalize_title(query)
        if not key:
            return []
        hits = [self.items[i] for i in self.title_index.get(key, ())]
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
        """sha256 over items and interactions (event included): an index built from another
        catalog is stale."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            for it in self.items.values():
                h.update(json.dumps(it.model_dump(mode="json"), sort_keys=True).encode())
            for x in self.interactions:
                h.update(f"{x.user}\t{x.item}\t{x.timestamp}\t{x.rating}\t{x.weight}\t{x.event}\n".encode())
            self._cache("_fingerprint", h.hexdigest())
        return self._fingerprint

    def items_fingerprint(self) -> str:
        """sha256 over the items only (what the text index depends on)."""
        h = hashlib.sha256()
        for it in self.items.values():
            h.update(json.dumps(it.model_dump(mode="json"), sort_keys=True).encode())
        return h.hexdigest()
