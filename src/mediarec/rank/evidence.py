"""Why an item was recommended, computed from the models (never written by the LLM).

For each recommended item and a history (oldest first):

* ``because``: the history items that contribute most to its collaborative score, from the exact
  item-item matrix ``M`` with the same recency weights the ranking uses
  (``score(j) = Σ_i w_i · M[i, j]``, :meth:`CollabModel.exact_scores`); each with its share of the
  positive contributions;
* ``similar``: the history items nearest to it by text embedding (cosine);
* ``shared_genres``, ``shared_tags``: what it has in common with the history (how many history
  items share each); ``era``: its decade when history items come from the same decade;
* ``request_match``: the cosine between its text embedding and the request's, when there is one;
* ``popularity``: the share of "similar users" (those who consumed the top contributing history
  items) who consumed it too, and its overall share of users.

The LLM gets this as data to explain from; the checker (:mod:`mediarec.rank.checker`) accepts a
reason only when it cites one of its :meth:`Evidence.elements`; template reasons are written from it.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Sequence

import numpy as np
from pydantic import BaseModel

from mediarec.catalog.model import STRENGTH_EVENTS, Interaction, Item, pair_liked
from mediarec.index.collab import strength_weights

if TYPE_CHECKING:
    from mediarec.catalog.model import Catalog
    from mediarec.index.store import CatalogIndex

TOP_HISTORY = 3  # history items named per kind of evidence
REQUEST_MATCH_MIN = 0.2  # a text cosine above this is a match a reason may cite


#: "People who liked Y also liked it" says people: at least this many other users liked both (one
#: shared fan is a coincidence, not a pattern). The reason checker holds LLM reasons to the same bar.
MIN_CO_LIKED = 2


class HistoryLink(BaseModel):
    """A history item that links to the recommended one, and how strongly."""

    id: str
    title: str
    year: int | None = None
    weight: float  # collaborative: share of the positive contributions; text: cosine
    genres: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return Item(id=self.id, title=self.title, year=self.year).label


def split_history(pairs: Sequence[tuple[Item, Interaction | None]]) -> tuple[list[Item], list[Item]]:
    """(liked, not liked) distinct items of a history, each in the order of its last event, oldest
    first. Liked is the catalog's one rule (:func:`mediarec.catalog.model.pair_liked`: no dislike, no
    rating below the user's own midpoint; a bare title is liked); an item liked and later disliked
    counts as not liked (the last word wins)."""
    last: dict[str, tuple[Item, bool]] = {}
    for (it, _), ok in zip(pairs, pair_liked(pairs)):
        last.pop(it.id, None)
        last[it.id] = (it, ok)
    liked = [it for it, ok in last.values() if ok]
    disliked = [it for it, ok in last.values() if not ok]
    return liked, disliked


class Evidence(BaseModel):
    """The model-computed reasons one item was recommended to one history."""

    item_id: str
    because: list[HistoryLink] = []  # collaborative contributors, strongest first
    similar: list[HistoryLink] = []  # text neighbours in the history, nearest first
    shared_genres: list[str] = []  # the item's genres found in the history, most shared first
    shared_tags: list[str] = []
    era: str | None = None  # "1990s" when history items come from the same decade
    era_count: int = 0  # how many history items come from it
    request_match: float | None = None  # cosine with the request (None without one)
    popularity: float | None = None  # share of similar users who consumed it
    overall_popularity: float | None = None  # share of all users who consumed it
    users: int = 0  # how many users of the catalog liked it
    catalog_users: int = 0  # how many users the catalog has
    liked_count: int = 0  # distinct liked items in the history (not plays)
    genre_counts: dict[str, int] = {}  # per shared genre: distinct liked items that have it
    #: The liked item a reason may compare with: it shares ``like_genres`` with the item (the
    #: strongest collaborative contributor that shares a genre, else the nearest by text, else any).
    like: HistoryLink | None = None
    like_genres: list[str] = []
    like_era: bool = False  # ``like`` comes from the item's decade too
    cowatched: HistoryLink | None = None  # a liked item whose fans also liked this one (collaborative)
    disliked: list[HistoryLink] = []  # distinct disliked items, most recent first
    asked: list[str] = []  # the request's genres the item has ("horror" for "a tense space horror")
    #: The item's decade where the request asked for a span of years that holds all of it ("1980s"
    #: for "from the 80s"), so a reason may say "from the 1980s, as you asked".
    asked_era: str = ""
    #: The request's people that made the item ("Stanley Kubrick" for "something by Kubrick").
    asked_people: list[str] = []
    #: The request's reference ("something like Kid A") and the genres the item shares with it: a
    #: reason may compare with it ("like Kid A (2000), which you named") though the user never liked it.
    reference: HistoryLink | None = None
    reference_genres: list[str] = []
    #: The item's genres one step from the reference's (none shared): "like Radiohead" (rock) gave Metallica (metal).
    reference_near: list[str] = []
    #: A replay (include-seen, issue 28): the item's plays in the history (weights: a play count
    #: in a play-count log), 0 when it is new to the user; ``replay_event`` the event it had there.
    plays: float = 0.0
    replay_event: str | None = None

    @property
    def no_liked_history(self) -> bool:
        """Nothing liked to rest a reason on (evidence made by hand may leave ``liked_count`` out)."""
        return self.liked_count == 0 and not (self.history_titles() or self.shared_genres or self.shared_tags
                                              or self.era or self.like)

    def with_request(self, item: Item, genres: Sequence[str], years: tuple[int | None, int | None] = (None, None),
                     people: Sequence[str] = ()) -> "Evidence":
        """This evidence with ``asked``: the request's ``genres`` that ``item`` has, ``asked_era``:
        the item's decade where the request's ``years`` (min, max; both given) hold all of it, and
        ``asked_people``: the request's ``people`` that made it."""
        own = {g.lower(): g for g in item.genres}
        lo, hi = years
        era = ""
        # a span asked for ("from the 80s", "between 1985 and 1995"); a bound alone ("older", "after
        # 2010") asked for no decade, so "from the 1980s, as you asked" would put words in their mouth
        if item.year and lo is not None and hi is not None:
            start = int(item.year) // 10 * 10
            if lo <= start and start + 9 <= hi:
                era = f"{start}s"
        from mediarec.rank.request import item_people

        made = item_people(item) if people else set()
        return self.model_copy(update={"asked": [own[g.lower()] for g in genres if g.lower() in own],
                                       "asked_era": era, "asked_people": [p for p in people if p.lower() in made]})

    def with_reference(self, item: Item, ref: Item | None) -> "Evidence":
        """This evidence with the request's reference item and the genres ``item`` shares with it."""
        if ref is None or ref.id == item.id:
            return self
        from mediarec.rank.request import genre_key, near_genres

        theirs = {g.lower() for g in ref.genres}
        shared = [g for g in item.genres if g.lower() in theirs]
        near = near_genres(ref.genres)
        return self.model_copy(update={
            "reference": HistoryLink(id=ref.id, title=ref.title, year=ref.year, weight=0.0, genres=tuple(ref.genres)),
            "reference_genres": shared,
            "reference_near": [] if shared else [g for g in item.genres if genre_key(g) in near]})

    def history_titles(self) -> list[HistoryLink]:
        """The history items cited, collaborative ones first, each once."""
        seen: set[str] = set()
        return [h for h in self.because + self.similar if not (h.id in seen or seen.add(h.id))]

    def elements(self) -> list[str]:
        """What a reason may cite (checker vocabulary): history titles, genres, tags, the era,
        ``request`` when the request matches, ``popular`` when similar users consumed it."""
        out = [h.title for h in self.history_titles()] + self.shared_genres + self.shared_tags
        if self.era:
            out.append(self.era)
        if self.asked or self.asked_era or self.asked_people or self.reference_genres or (self.request_match is not None
                                                    and self.request_match > REQUEST_MATCH_MIN):
            out.append("request")
        if self.popularity:
            out.append("popular")
        return out

    def lines(self) -> list[str]:
        """The evidence as short lines for people (``:why``)."""
        out = []
        if self.because:
            out.append("liked items that lead to it: " + ", ".join(
                f"{h.label} ({h.weight:.0%})" for h in self.because))
        if self.similar:
            out.append("closest in your history by description: " + ", ".join(
                f"{h.label} (cosine {h.weight:.2f})" for h in self.similar))
        if self.shared_genres:
            out.append("shared genres: " + ", ".join(self.shared_genres))
        if self.shared_tags:
            out.append("shared tags: " + ", ".join(self.shared_tags))
        if self.era:
            out.append(f"era: the {self.era}, like {self.era_count} item(s) you liked")
        if self.request_match is not None:
            out.append(f"match with your request: cosine {self.request_match:.2f}")
        if self.popularity is not None:
            out.append(f"consumed by {self.popularity:.0%} of users who liked the same items"
                       + (f" ({self.overall_popularity:.0%} of all users)" if self.overall_popularity is not None else ""))
        return out

def decade(year: int | None) -> str | None:
    return f"{(int(year) // 10) * 10}s" if year else None


class EvidenceBuilder:
    """Computes :class:`Evidence` over one catalog and its built index (cheap per item: one column
    of ``M`` restricted to the history's rows, one text dot product per history item)."""

    def __init__(self, catalog: "Catalog", index: "CatalogIndex"):
        self.catalog, self.index = catalog, index

    def users_of(self, item_id: str) -> frozenset[str]:
        """Users who liked ``item_id`` (:meth:`Catalog.liked_by`)."""
        return self.catalog.liked_by(item_id)

    def build(self, items: Sequence[Item], history: Sequence[tuple[Item, Interaction | None]],
              request: str | None = None) -> dict[str, Evidence]:
        """Evidence for each of ``items`` (by id) given the history pairs, oldest first."""
        wanted, unwanted = split_history(history)  # distinct items: counts are of items, not plays
        wanted_ids = [it.id for it in wanted]
        req_vec = None
        if request and request.strip():
            req_vec = np.asarray(self.index.embedder.embed([request.strip()])[0], dtype=np.float32)
            req_vec /= max(float(np.linalg.norm(req_vec)), 1e-12)
        collab = self.index.collab
        rows, ws = ([], np.zeros(0))
        if collab is not None and collab.matrix is not None and wanted_ids:
            strength = {it.id: x.weight for it, x in history if x is not None and x.event in STRENGTH_EVENTS}
            weights = strength_weights(collab.settings.strength, [strength.get(i) for i in wanted_ids])
            rows, ws = collab._weighted_rows(wanted_ids, None, weights)  # the ranking's own weights
        by_row = {r: it for r, it in zip((collab._pos.get(i) for i in wanted_ids), wanted) if r is not None} \
            if rows else {}
        tpos = [self.index.position(it.id) for it in wanted]
        t_items = [it for it, p in zip(wanted, tpos) if p is not None]
        t_vecs = self.index.text_vectors[[p for p in tpos if p is not None]] if t_items else None
        t_norms = np.linalg.norm(t_vecs, axis=1) if t_vecs is not None else None  # once, not per item
        genre_counts = Counter(g.lower() for it in wanted for g in set(it.genres))
        tag_counts = Counter(t.lower() for it in wanted for t in set(it.tags))
        decades = Counter(decade(it.year) for it in wanted if it.year)
        n_users = max(len(self.catalog.by_user), 1)
        plays: Counter = Counter()
        events: dict[str, str] = {}
        for it, x in history:
            if x is None or x.is_positive:
                plays[it.id] += x.weight if x is not None else 1.0
                events[it.id] = x.event if x is not None else "watch"
        out: dict[str, Evidence] = {}
        for item in items:
            ev = Evidence(item_id=item.id)
            col = collab._pos.get(item.id) if rows else None
            if col is not None:
                contrib = ws * collab.matrix[rows, col]
                pos_total = float(contrib[contrib > 0].sum())
                for j in np.argsort(-contrib, kind="stable")[:TOP_HISTORY]:
                    if contrib[j] > 0 and pos_total > 0 and by_row[rows[j]].id != item.id:  # not itself (a replay)
                        h = by_row[rows[j]]
                        ev.because.append(HistoryLink(id=h.id, title=h.title, year=h.year,
                                                      weight=float(contrib[j]) / pos_total))
            p = self.index.position(item.id)
            if p is not None and t_vecs is not None:
                v = self.index.text_vectors[p]
                cos = (t_vecs @ v) / np.maximum(t_norms * max(float(np.linalg.norm(v)), 1e-12), 1e-12)
                # a description is compared with those of the same kind only: an artist's with an
                # artist's, never with a film's ("Metallica: its description is close to Toy Story 3's")
                for j in [j for j in np.argsort(-cos, kind="stable") if t_items[j].kind == item.kind][:TOP_HISTORY]:
                    if t_items[j].id != item.id:
                        ev.similar.append(HistoryLink(id=t_items[j].id, title=t_items[j].title,
                                                      year=t_items[j].year, weight=float(cos[j])))
            if p is not None and req_vec is not None:  # with an empty history too
                v = self.index.text_vectors[p]
                ev.request_match = float(v @ req_vec / max(float(np.linalg.norm(v)), 1e-12))
            ev.shared_genres = sorted((g for g in item.genres if genre_counts[g.lower()]),
                                      key=lambda g: -genre_counts[g.lower()])
            ev.shared_tags = sorted((t for t in item.tags if tag_counts[t.lower()]),
                                    key=lambda t: -tag_counts[t.lower()])[:5]
            era = decade(item.year)
            if era and decades.get(era):
                ev.era, ev.era_count = era, decades[era]
            users = self.users_of(item.id)
            ev.overall_popularity = len(users) / n_users
            ev.users, ev.catalog_users = len(users), len(self.catalog.by_user)
            similar_users = set().union(*(self.users_of(h.id) for h in ev.because)) if ev.because else set()
            if similar_users:
                ev.popularity = len(users & similar_users) / len(similar_users)
            ev.liked_count = len(wanted)
            if plays.get(item.id):
                ev.plays, ev.replay_event = float(plays[item.id]), events[item.id]
            ev.genre_counts = {g: genre_counts[g.lower()] for g in ev.shared_genres}
            self._compare(item, ev, wanted, users)
            ev.disliked = [HistoryLink(id=h.id, title=h.title, year=h.year, weight=1.0, genres=h.genres)
                           for h in reversed(unwanted) if h.id != item.id][:TOP_HISTORY]
            out[item.id] = ev
        return out

    def _compare(self, item: Item, ev: Evidence, liked: Sequence[Item], users: set[str]) -> None:
        """``like``/``like_genres``/``like_era``: a liked item sharing a genre with ``item``,
        preferring the ones the models link to it; ``cowatched``: the strongest collaborative
        contributor that at least :data:`MIN_CO_LIKED` users also liked together with the item."""
        by_id = {it.id: it for it in liked}
        own = {g.lower(): g for g in item.genres}
        order = [h.id for h in ev.history_titles()] + [it.id for it in reversed(liked)]
        for hid in dict.fromkeys(order):
            h = by_id.get(hid)
            if h is None or h.id == item.id:
                continue
            common = [own[g.lower()] for g in h.genres if g.lower() in own]
            if common:
                ev.like = HistoryLink(id=h.id, title=h.title, year=h.year, weight=1.0, genres=h.genres)
                ev.like_genres = sorted(common, key=lambda g: -ev.genre_counts.get(g, 0))
                ev.like_era = bool(item.year and h.year and decade(item.year) == decade(h.year))
                break
        for h in ev.because:
            if h.id in by_id and len(users & self.users_of(h.id)) >= MIN_CO_LIKED:
                ev.cowatched = h
                break
