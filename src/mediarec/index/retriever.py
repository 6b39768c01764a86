"""Candidate retrieval: pull items near a user's history from both Chroma collections and fuse.

Fusion (documented, used everywhere, tuned in the evaluation):

    fused(j) = w_collab · collab(j) / max_collab  +  w_text · text(j) / max_text

``collab(j) = Σ_i decay^(age_i) · M[i, j]``, the exact item-item model applied to the history (0 for
items the model does not cover, see :mod:`mediarec.index.collab`), ``text(j)`` the cosine between the item's text embedding and the
recency-weighted mean of the history's text embeddings (mixed with the embedded interest profile
when one is given, and with a free-text request when there is one; the text side's weight then
rises so the request leads). Each side is divided by its best score for this user, so the two are on one scale and
the result does not depend on which pool of candidates was scored: the pool Chroma returns holds
each side's best item. Already-consumed items are excluded, unless ``include_seen`` (a
catalogue or request that allows replays, issue 28): then only disliked and low-rated ones are.

Negatives push away (issue 28): a disliked item (weight 1; a rating below the user's own midpoint
weighs ``FusionSettings.low_rating_push``, 0 by measurement) is seen, not wanted, and
``FusionSettings.negative_weight`` β subtracts it on each side and from the fused score:

    collab(j) = Σ_wanted w_i M[i, j]  -  β · max(0, Σ_neg w_d M[d, j])
    text query = unit(wanted vector) - β · s · unit(negatives' vector)
    fused(j)  -= β · s · genres(j),   genres(j) = the share of j's genres that a negative has

with ``s`` the negatives' share of the history's (recency) weight, so one dislike among fifty likes
nudges and a history of dislikes alone turns the list around ("unlike X"). The learned stage also
sees each candidate's similarity to the disliked items
(:mod:`mediarec.rank.features`, group ``negative``).

``candidates()`` asks Chroma for each side's nearest items (HNSW over the text embeddings and over
the collaborative factor vectors, both approximate), adds the collaborative side's exact best
items (one row sum of M, cheap), and re-scores the union exactly; ``score_all()`` scores every item
the same way (the evaluation's full ranking). So on the collaborative side the two always agree;
with text they agree wherever Chroma's text search found its best items, which a deep
``ef_search`` makes the rule (tests/test_retrieval.py measures both). A catalogue of up to
``EXACT_SEARCH_MAX_ITEMS`` items is searched the same way in memory instead (one product with every
item's vector is cheaper there than a Chroma query, and exact): on the demo, ML-100k and
latest-small every candidate list is the same as through Chroma.

A parsed request (:class:`~mediarec.rank.request.Constraints`, optional everywhere) narrows both:
items that break a hard constraint take no part (they are -inf, and the per-side maxima are taken
over the allowed items), Chroma's text search gets the ``where`` filter the index can evaluate
(kind, year), and the pool gains each side's exact best allowed items, so the two still agree. A
reference item ("like Alien but ...") joins the history's query and is not recommended.

A trained sequential model (:mod:`mediarec.index.seq`, given as ``seq``) is a third side: its
scores over every item for the positive history become ``exp(s(j) - max s)`` (its softmax over the
unconsumed items, divided by the best one's, so its best item is 1 like the other sides'), weighed
``FusionSettings.seq_weight``; its exact best items join the pool (source ``"seq"``).
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from mediarec.catalog.model import Interaction, Item
from mediarec.index.collab import recency_weights, strength_weights
from mediarec.errors import MediarecError
from mediarec.index.store import CatalogIndex, chroma_errors



class ItemFilter(Protocol):
    """What retrieval needs of a parsed request (:class:`mediarec.rank.request.Constraints`):
    hard filters, a reference item, and a Chroma ``where`` clause for the text side."""

    @property
    def is_hard(self) -> bool: ...

    @property
    def reference(self) -> str | None: ...

    @property
    def more_references(self) -> list[str]: ...

    def allows(self, item: Item) -> bool: ...

    def where(self) -> dict | None: ...


def _references(constraints: "ItemFilter | None") -> list[str]:
    """The items a request compares to ("like X and Y"), first named first."""
    if constraints is None or not constraints.reference:
        return []
    return [constraints.reference, *getattr(constraints, "more_references", ())]


class FusionSettings(BaseModel):
    """Weights of the two sides.

    ``query_weight`` is the share of a free-text request in the text query vector; with a request
    the text side weighs ``request_text_weight`` instead of ``text_weight``, so what the user asks
    for leads and the history still breaks ties. ``profile_weight`` is the share of an interest
    profile (``profile=`` text, see :mod:`mediarec.rank.profile`) in the history's text vector; the
    evaluation harness measures what it does (eval/results/movielens-100k-profile-summaries).
    """

    collab_weight: float = 1.0
    text_weight: float = 0.15
    request_text_weight: float = 5.0
    text_decay: float | None = None  # None: 0.9 on a time-ordered log, 1 (no recency) otherwise
    query_weight: float = 0.8
    profile_weight: float = 0.3
    pool_factor: int = 3
    # β: how hard a dislike pushes away (0: it is only excluded); 1: it weighs as much against its
    # neighbours as a liked item for them. No public log has dislikes to tune it on.
    negative_weight: float = 1.0
    # A low rating's push relative to a dislike's. On ML-100k validation users any push hurt
    # (hybrid NDCG@10 0.1103 at 0, 0.1079 at 0.25, 0.1060 at 0.5, 0.0994 at 1; docs/architecture.md,
    # "Negatives"): for retrieval a low rating is "seen, not liked"; the learned stage weighs it.
    low_rating_push: float = 0.0
    # The sequential model's side, when the served catalog has one (issue 29): 1 weighs its best
    # item as the collaborative side's best. Not tuned on validation users; the learned stage
    # (which sees it as the "seq" feature group) decides per candidate how much to trust it.
    seq_weight: float = 1.0


class Candidate(BaseModel):
    """A retrieved item with its per-source scores."""

    model_config = ConfigDict(frozen=True)

    item: Item
    score: float
    collab_score: float | None = None
    text_score: float | None = None
    seq_score: float | None = None
    sources: tuple[str, ...] = ()


HistoryLike = Sequence[Interaction | str | Item]


class SeqLike(Protocol):
    """What retrieval needs of a sequential model (:class:`mediarec.index.seq.SeqScorer`)."""

    item_ids: list[str]

    def score_array(self, history: Sequence[str]) -> np.ndarray: ...

    def score_many(self, histories: Sequence[Sequence[str]]) -> np.ndarray: ...


def seq_share(raw: np.ndarray) -> np.ndarray:
    """exp(s - max s) over the finite scores, 0 elsewhere: the model's softmax divided by its best
    item's, so its best is 1 (as each other side's best after scaling) and a poor item is ~0."""
    finite = np.isfinite(raw)
    if not finite.any():
        return np.zeros(len(raw))
    top = float(raw[finite].max())
    return np.where(finite, np.exp(np.where(finite, raw, top) - top), 0.0)


# Up to this many items, each side's nearest items are found exactly in memory (one product with
# every item's vector: 0.2 ms at 2,000 × 384, about 2 ms at 20,000) instead of through Chroma's HNSW,
# whose query cost 3.8 ms on the demo's 332 items, a third of a served request. The same
# items come back, without the approximation; larger catalogues query Chroma.
EXACT_SEARCH_MAX_ITEMS = 20_000


class Retriever:
    """Hybrid text + collaborative candidate generation over a built CatalogIndex."""

    def __init__(self, index: CatalogIndex, fusion: FusionSettings | None = None, seq: SeqLike | None = None,
                 exact_search_max_items: int | None = None):
        """``seq``: a trained sequential model of this catalog (``item_ids`` and ``score_array``), or None.
        ``exact_search_max_items``: up to this many items, nearest items are found in memory (0: always
        Chroma; default EXACT_SEARCH_MAX_ITEMS). Then a Chroma server that goes away after the index is
        loaded does not stop recommendations; updates still need it."""
        limit = EXACT_SEARCH_MAX_ITEMS if exact_search_max_items is None else exact_search_max_items
        self.exact_search = len(index.item_ids) <= limit
        if index.text_vectors is None:
            index.load()
        self.index = index
        self.catalog = index.catalog
        self.fusion = fusion or FusionSettings()
        if self.fusion.text_decay is None:  # without a real time order, recency means nothing
            self.fusion = self.fusion.model_copy(update={"text_decay": 0.9 if index.collab.settings.ordered else 1.0})
        # Where each modelled item sits in the catalogue: the exact scores are scattered there, so
        # scoring every item is one row sum of M, with zeros for items the model does not cover.
        self._collab_rows = np.array([index.position(i) for i in index.collab.item_ids], dtype=np.int64)
        self._genres: list[frozenset[str]] | None = None  # each row's genres, for the genre penalty
        self.seq = seq
        self._seq_cache: tuple[tuple[str, ...], np.ndarray | None] | None = None
        self._seq_primed: dict[tuple[str, ...], np.ndarray | None] = {}
        if seq is not None:
            pos = [(k, index.position(i)) for k, i in enumerate(seq.item_ids)]
            self._seq_cols = np.array([k for k, p in pos if p is not None], dtype=np.int64)
            self._seq_rows = np.array([p for _, p in pos if p is not None], dtype=np.int64)

    def prime_seq(self, wanted: Sequence[Sequence[str]], raw: np.ndarray) -> None:
        """Keep the scores ``raw[k]`` (in the model's item order) of the histories ``wanted[k]``,
        scored together in one batch, for :meth:`seq_scores` to read."""
        self._seq_primed = {}
        for w, r in zip(wanted, raw):
            key = tuple(w)
            out = None
            if any(self.index.position(i) is not None for i in w):
                out = np.full(len(self.index.item_ids), -np.inf, dtype=np.float64)
                out[self._seq_rows] = r[self._seq_cols]
            self._seq_primed[key] = out

    def seq_scores(self, wanted: Sequence[str]) -> np.ndarray | None:
        """The sequential model's raw score of every catalogue row for the positive history
        ``wanted`` (-inf for rows it does not know); None without a model or a known item. The
        last history's scores are kept: the learned stage asks again for its features."""
        if self.seq is None:
            return None
        key = tuple(wanted)
        if self._seq_cache is not None and self._seq_cache[0] == key:
            return self._seq_cache[1]
        if key in self._seq_primed:
            return self._seq_primed[key]
        out = None
        if any(self.index.position(i) is not None for i in wanted):
            raw = self.seq.score_array(list(wanted))
            out = np.full(len(self.index.item_ids), -np.inf, dtype=np.float64)
            out[self._seq_rows] = raw[self._seq_cols]
        self._seq_cache = (key, out)
        return out

    def _history_vector(self, hist: Sequence[str], weights: Sequence[float] | None = None
                        ) -> tuple[np.ndarray | None, float]:
        """(unit recency-weighted text vector of the history's items, their total weight)."""
        pos = [(self.index.position(i), k) for k, i in enumerate(hist)]
        keep = [(r, k) for r, k in pos if r is not None]
        if not keep:
            return None, 0.0
        w = recency_weights(len(hist), self.fusion.text_decay)
        if weights is not None:
            w = w * np.asarray(weights, dtype=np.float64)
        w = np.array([w[k] for _, k in keep], dtype=np.float32)
        vec = w @ self.index.text_vectors[[r for r, _ in keep]]
        norm = float(np.linalg.norm(vec))
        return (vec / norm if norm > 1e-12 else None), float(w.sum())

    def _text_query(self, hist: list[str], query: str | None, profile: str | None = None,
                    negatives: Sequence[tuple[str, float]] = ()) -> np.ndarray | None:
        vec, w_pos = self._history_vector(hist)
        beta = self.fusion.negative_weight
        if negatives and beta > 0:
            neg, w_neg = self._history_vector([i for i, _ in negatives], [w for _, w in negatives])
            if neg is not None:
                share = w_neg / (w_pos + w_neg)
                vec = -beta * share * neg if vec is None else vec - beta * share * neg
                vec /= max(float(np.linalg.norm(vec)), 1e-12)
        if profile and profile.strip() and self.fusion.profile_weight > 0:
            p = self.index.embedder.embed([profile.strip()])[0]
            vec = p if vec is None else self.fusion.profile_weight * p + (1 - self.fusion.profile_weight) * vec
            vec /= max(float(np.linalg.norm(vec)), 1e-12)
        if query and query.strip():
            q = self.index.embedder.embed([query.strip()])[0]
            vec = q if vec is None else self.fusion.query_weight * q + (1 - self.fusion.query_weight) * vec
            vec /= max(float(np.linalg.norm(vec)), 1e-12)
        return vec

    # -- scoring ---------------------------------------------------------------------------
    def _query(self, wanted: list[str], query: str | None, profile: str | None = None,
               negatives: Sequence[tuple[str, float]] = (), weights: Sequence[float] | None = None):
        """(exact collaborative scores of every catalogue item, text query vector), each None when
        there is nothing to build it from; ``negatives`` (item id, weight) push both away;
        ``weights``: the wanted items' strengths (:meth:`strengths`)."""
        collab = None
        exact = self.index.collab.exact_scores(wanted, weights=weights) if wanted else None
        against = self._negative_collab(negatives)
        if against is not None:
            exact = -against if exact is None else exact - against
        if exact is not None:
            collab = np.zeros(len(self.index.item_ids), dtype=np.float32)
            collab[self._collab_rows] = exact
        return collab, self._text_query(wanted, query, profile, negatives)

    def _negative_share(self, wanted: list[str], negatives: Sequence[tuple[str, float]]) -> float:
        """The negatives' share of the history's recency weight (0 without negatives)."""
        if not negatives:
            return 0.0
        _, w_pos = self._history_vector(wanted)
        _, w_neg = self._history_vector([i for i, _ in negatives], [w for _, w in negatives])
        return w_neg / (w_pos + w_neg) if w_neg > 0 else 0.0

    def genre_penalty(self, wanted: list[str], negatives: Sequence[tuple[str, float]]) -> np.ndarray | None:
        """β · s · (the share of each item's genres that a negative item has, weighted): what the
        fused score loses for resembling what was disliked (None without negatives)."""
        beta = self.fusion.negative_weight
        if not negatives or beta <= 0:
            return None
        weight: dict[str, float] = {}
        for i, w in negatives:
            it = self.catalog.items.get(i)
            for g in (it.genres if it is not None else ()):
                weight[g.lower()] = max(weight.get(g.lower(), 0.0), w)
        if not weight:
            return None
        if self._genres is None:
            items = self.catalog.items
            self._genres = [frozenset(g.lower() for g in items[i].genres) if i in items else frozenset()
                            for i in self.index.item_ids]
        share = np.zeros(len(self.index.item_ids), dtype=np.float64)
        for j, gs in enumerate(self._genres):
            if gs and not gs.isdisjoint(weight):
                share[j] = sum(weight.get(g, 0.0) for g in gs) / len(gs)
        return beta * self._negative_share(wanted, negatives) * share

    def _negative_collab(self, negatives: Sequence[tuple[str, float]]) -> np.ndarray | None:
        """β · max(0, Σ w_d M[d, :]) over the modelled items (None without modelled negatives or with
        β 0): a dislike takes from its neighbours; an item that merely does not go with it gains nothing."""
        beta = self.fusion.negative_weight
        if not negatives or beta <= 0 or not len(self.index.collab.item_ids):
            return None
        exact = self.index.collab.exact_scores([i for i, _ in negatives], weights=[w for _, w in negatives])
        return None if exact is None else beta * np.maximum(exact, 0.0)

    def _user_vector(self, wanted: list[str], negatives: Sequence[tuple[str, float]],
                     weights: Sequence[float] | None = None) -> np.ndarray | None:
        """The collaborative query vector for Chroma: the liked items' minus β times the negatives'."""
        collab = self.index.collab
        u = collab.user_vector(wanted, weights=weights) if wanted else None
        beta = self.fusion.negative_weight
        if negatives and beta > 0:
            n = collab.user_vector([i for i, _ in negatives], weights=[w for _, w in negatives])
            if n is not None:
                u = -beta * n if u is None else u - beta * n
        return u

    def collab_scores(self, history: HistoryLike) -> np.ndarray | None:
        """The raw exact collaborative score of every catalogue item (no exclusion, no scaling);
        None when no positive item of the history is modelled."""
        wanted = self.catalog.history_ids(history, positives_only=True)
        return self._query(wanted, None, weights=self.strengths(history, wanted))[0]

    def strengths(self, history: HistoryLike, wanted: Sequence[str]) -> list[float] | None:
        """The collaborative weight of each of ``wanted`` (the history's positives, then perhaps a
        request's reference item) from interaction strengths (:attr:`CollabSettings.strength`);
        None where every item weighs alike."""
        strength = self.index.collab.settings.strength
        if strength == "none" or not wanted:
            return None
        return strength_weights(strength, self.catalog.history_strengths(history), len(wanted))

    def _side_scores(self, collab: np.ndarray | None, tvec: np.ndarray | None, rows: np.ndarray | None = None):
        """Raw (collab, text) scores for catalog rows (all rows when None); None for a missing side."""
        text = None
        if collab is not None and rows is not None:
            collab = collab[rows]
        if tvec is not None:
            tv = self.index.text_vectors if rows is None else self.index.text_vectors[rows]
            text = tv @ tvec
        return collab, text

    def _fuse(self, collab, text, n: int, query: str | None = None, seq: np.ndarray | None = None) -> np.ndarray:
        f = self.fusion
        text_weight = f.request_text_weight if query and query.strip() else f.text_weight
        fused = np.zeros(n, dtype=np.float64)
        if seq is not None and f.seq_weight:
            fused += f.seq_weight * seq_share(seq)
        for raw, w in ((collab, f.collab_weight), (text, text_weight)):
            if raw is not None and w:
                finite = raw[np.isfinite(raw)]
                top = float(finite.max()) if len(finite) else 0.0
                if top <= 1e-12:  # only negatives to go on (a history of dislikes): scale by the largest
                    top = float(np.abs(finite).max()) if len(finite) else 0.0
                fused += w * np.where(np.isfinite(raw), raw, 0.0) / (top if top > 1e-12 else 1.0)
        return fused

    def allowed(self, constraints: "ItemFilter | None") -> np.ndarray | None:
        """Which catalogue rows satisfy the hard constraints (aligned with ``index.item_ids``);
        None when nothing filters."""
        if constraints is None or not constraints.is_hard:
            return None
        items = self.catalog.items
        return np.fromiter((i in items and constraints.allows(items[i]) for i in self.index.item_ids),
                           dtype=bool, count=len(self.index.item_ids))

    def _with_reference(self, history: HistoryLike, constraints: "ItemFilter | None"
                        ) -> tuple[list[str], list[str], list[tuple[str, float]]]:
        """(seen ids, wanted ids, negatives) of the history, the request's reference items added to
        the first two. A dislike or a low rating is seen, not wanted: a negative."""
        history = list(history)
        hist = self.catalog.history_ids(history)
        wanted = self.catalog.history_ids(history, positives_only=True)
        negatives = self.catalog.history_negatives(history, weak=self.fusion.low_rating_push)
        for ref in _references(constraints):
            if ref in self.catalog.items:
                hist = hist + [ref] if ref not in hist else hist
                wanted = wanted + [ref] if ref not in wanted else wanted
                negatives = [(i, w) for i, w in negatives if i != ref]
        return hist, wanted, negatives

    def _unliked(self, history: HistoryLike, constraints: "ItemFilter | None") -> list[str]:
        """What stays out when seen items may come back: disliked and low-rated items (never
        recommended back), and a request's reference items."""
        out = [i for i, _ in self.catalog.history_negatives(list(history), weak=1.0)]
        return out + [r for r in _references(constraints) if r in self.catalog.items]

    def score_all(self, history: HistoryLike, query: str | None = None,
                  sides: Iterable[str] = ("collab", "text"), profile: str | None = None,
                  constraints: "ItemFilter | None" = None, include_seen: bool = False) -> np.ndarray:
        """Fused scores of every catalog item (aligned with ``index.item_ids``), consumed items and
        items that break a hard constraint -inf (``include_seen``: only the disliked and low-rated
        consumed items)."""
        hist, wanted, negatives = self._with_reference(history, constraints)
        if include_seen:
            hist = self._unliked(history, constraints)
        collab_all, tvec = self._query(wanted, query, profile, negatives, self.strengths(history, wanted))
        return self._score_all(collab_all, tvec, hist, self.allowed(constraints), query, set(sides),
                               self.genre_penalty(wanted, negatives),
                               self.seq_scores(wanted) if "seq" in sides or "collab" in sides else None)

    def _score_all(self, collab_all, tvec, hist: Iterable[str], mask: np.ndarray | None, query: str | None,
                   sides: set[str], penalty: np.ndarray | None, seq: np.ndarray | None = None) -> np.ndarray:
        """:meth:`score_all` from the built query: every row fused, seen and disallowed rows -inf."""
        collab, text = self._side_scores(collab_all, tvec)
        if collab is not None:
            collab = collab.copy()
        if seq is not None:
            seq = seq.copy()
        seen = [p for p in (self.index.position(i) for i in hist) if p is not None]
        if mask is not None:
            seen = sorted(set(seen) | set(np.flatnonzero(~mask).tolist()))
        for raw in (collab, text, seq):
            if raw is not None:
                raw[seen] = -np.inf  # consumed items take no part in the per-side maxima either
        fused = self._fuse(collab if "collab" in sides else None, text if "text" in sides else None,
                           len(self.index.item_ids), query, seq)
        if penalty is not None:
            fused -= penalty
        fused[seen] = -np.inf
        return fused

    def candidates(self, history: HistoryLike, k: int = 20, query: str | None = None,
                   exclude: Iterable[str] = (), profile: str | None = None,
                   constraints: "ItemFilter | None" = None, include_seen: bool = False) -> list[Candidate]:
        """The k best items for a history (and optional free-text request, interest-profile text
        and parsed request), best first; ``include_seen``: liked history items may come back."""
        hist, wanted, negatives = self._with_reference(history, constraints)
        if not wanted and not negatives and not (query and query.strip()):
            raise MediarecError("nothing to recommend from: give a history (items the user consumed) or a request")
        if include_seen:
            hist = self._unliked(history, constraints)
        banned = set(hist) | set(exclude)
        mask = self.allowed(constraints)
        pool_n = min(len(self.index.item_ids), max(k, 1) * self.fusion.pool_factor + len(banned))
        pool: dict[str, set[str]] = {}
        if include_seen:  # the liked history items are candidates too (a replay), scored as any other
            for i in wanted:
                pool.setdefault(i, set()).add("history")
        # built once: the pool and the re-scoring share them
        weights = self.strengths(history, wanted)
        collab_all, tvec = self._query(wanted, query, profile, negatives, weights)
        seq_all = self.seq_scores(wanted)
        with chroma_errors(f"the index of {self.catalog.name!r} cannot be queried"):
            if collab_all is not None and self.fusion.collab_weight:
                uvec = self._user_vector(wanted, negatives, weights)
                if uvec is not None:
                    n = min(pool_n, len(self.index.collab.item_ids))
                    if self.exact_search:
                        found = self._nearest(self.index.collab.item_vectors @ uvec, n, self.index.collab.item_ids)
                    else:
                        found = self.index.collab_collection.query(query_embeddings=[uvec.tolist()], n_results=n,
                                                                   include=[])["ids"][0]
                    for i in found:
                        pool.setdefault(i, set()).add("collab")
                for i in self._exact_best(collab_all, banned, pool_n - len(banned), mask):
                    pool.setdefault(i, set()).add("collab")
            if tvec is not None and (self.fusion.text_weight or query):
                if not self.exact_search:
                    where = constraints.where() if constraints is not None else None
                    res = self.index.text_collection.query(query_embeddings=[tvec.tolist()], n_results=pool_n,
                                                           include=[], **({"where": where} if where else {}))
                    found = res["ids"][0]
                elif mask is None:  # (a ``where`` comes with a mask: the exact best allowed below has them all)
                    found = self._nearest(self.index.text_vectors @ tvec, pool_n, self.index.item_ids)
                else:
                    found = []
                for i in found:
                    pool.setdefault(i, set()).add("text")
                if mask is not None or negatives:
                    # Filters Chroma cannot evaluate (genres), or a query turned away from the
                    # negatives (a search near an antipode is unreliable): the exact best allowed.
                    for i in self._exact_best(self.index.text_vectors @ tvec, banned, pool_n, mask,
                                                modelled_only=False):
                        pool.setdefault(i, set()).add("text")
            if seq_all is not None and self.fusion.seq_weight:
                for i in self._exact_best(seq_all, banned, pool_n, mask, modelled_only=False):
                    pool.setdefault(i, set()).add("seq")
            penalty = self.genre_penalty(wanted, negatives)
            if negatives:  # and a genre penalty no index knows: the exact best of the full score
                full = self._score_all(collab_all, tvec, banned, mask, query, {"collab", "text"}, penalty, seq_all)
                for i in self._exact_best(full, banned, pool_n, mask, modelled_only=False):
                    pool.setdefault(i, set()).add("text" if tvec is not None else "collab")
        ids = [i for i in pool if i not in banned and i in self.catalog.items]
        if mask is not None:
            ids = [i for i in ids if mask[self.index.position(i)]]
        if not ids:
            return []
        rows = np.array([self.index.position(i) for i in ids], dtype=np.int64)
        collab, text = self._side_scores(collab_all, tvec, rows)
        seq = None if seq_all is None else seq_all[rows]
        # Each side is normalised by its best unconsumed item; the pool holds each side's top hits
        # (the collaborative ones exactly), so these maxima equal the catalogue-wide ones of score_all().
        fused = self._fuse(collab, text, len(ids), query, seq)
        if penalty is not None:
            fused -= penalty[rows]
        order = np.argsort(-fused, kind="stable")[:k]
        return [Candidate(item=self.catalog.items[ids[j]], score=float(fused[j]),
                          collab_score=None if collab is None else float(collab[j]),
                          text_score=None if text is None else float(text[j]),
                          seq_score=None if seq is None else float(seq[j]),
                          sources=tuple(sorted(pool[ids[j]]))) for j in order]

    @staticmethod
    def _nearest(scores: np.ndarray, n: int, ids: Sequence[str]) -> list[str]:
        """The ``n`` ids with the highest ``scores`` (inner product; the text vectors are unit
        length, so cosine too), best first, seen items included: what Chroma's query returns."""
        n = min(n, len(scores))
        if n <= 0:
            return []
        best = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
        return [ids[j] for j in best[np.argsort(-scores[best], kind="stable")]]

    def _exact_best(self, side: np.ndarray, banned: set[str], n: int, mask: np.ndarray | None = None,
                    modelled_only: bool = True) -> list[str]:
        """The ``n`` unbanned (and allowed, when ``mask`` is given) items with the best exact
        scores of one side: over the collaboratively modelled items, or every item."""
        scores = np.full(len(self.index.item_ids), -np.inf, dtype=np.float32)
        if modelled_only:
            scores[self._collab_rows] = side[self._collab_rows]
        else:
            scores[:] = side
        banned_rows = [p for p in (self.index.position(i) for i in banned) if p is not None]
        scores[banned_rows] = -np.inf
        if mask is not None:
            scores[~mask] = -np.inf
        n = min(max(n, 1), int(np.isfinite(scores).sum()))
        if n <= 0:
            return []
        best = np.argpartition(-scores, n - 1)[:n]
        return [self.index.item_ids[j] for j in best if np.isfinite(scores[j])]
