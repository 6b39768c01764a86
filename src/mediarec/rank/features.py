"""Features of (history, candidate) pairs for the learned second stage (:mod:`mediarec.rank.learned`).

Every retrieval signal is a feature on its own, beside the fused score that ordered the pool:

=============  ===============================================================================
group          features (per candidate, within the user's pool of the top ``pool`` fused items)
=============  ===============================================================================
retrieval      fused score / the pool's best, its rank (the first stage's order)
collab         exact item-item score M, transitions T, the EASE part (M - (1-α)T)/α; each / the
               pool's best, and its rank in the pool
text           cosine to the history's (and profile's) text vector; / the best, rank
request        cosine to the request alone (NaN without one)
popularity     log interactions, log interactions in the log's last 10% of time, years since the
               item's year, days since its first interaction
overlap        genre, tag and decade overlap with the last 10 positive history items
negative       what the history pushes away from (its dislikes; low ratings weigh
               LOW_RATING_FEATURE_WEIGHT, 0 by measurement): the largest weighted cosine to a
               negative item's text, Σ w·M[d, j] / the pool's largest, weighted genre overlap
               with the negatives (each 0 without negatives)
user           log history length, mean log popularity of the history
seq            the sequential model's score as exp(s - the pool's best s), its rank in the pool
               (the catalogue's trained model, :mod:`mediarec.index.seq`; left out of a model
               trained where the catalogue has none)
repeat         only where seen items may come back (``include_seen``, issue 28): log of the
               candidate's plays in the history, log of the events since its last play (NaN if
               never played), its share of the history, and the user's repeat share (how many of
               their events replay an item played before); left out of every other model, so a
               catalogue without ``include_seen`` trains exactly as before
=============  ===============================================================================

:class:`Signals` computes them over a catalogue and a collaborative model: at serving time the
index's own (what the first stage ranks with), at training time a model fitted without the
held-out positions (so a target never informs its own features).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy import sparse

from mediarec.catalog.model import Catalog, Interaction, pair_flags
from mediarec.index.collab import CollabModel, item_sequences
from mediarec.index.retriever import FusionSettings, Retriever, seq_share

FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "retrieval": ("fused", "fused_rank"),
    "collab": ("collab", "collab_rank", "trans", "trans_rank", "ease", "ease_rank"),
    "text": ("text", "text_rank"),
    "request": ("request",),
    "popularity": ("pop", "recent_pop", "years_old", "days_in_log"),
    "overlap": ("genre_overlap", "tag_overlap", "decade_overlap"),
    "negative": ("neg_text", "neg_collab", "neg_genre"),
    "user": ("history_len", "history_pop"),
    "seq": ("seq", "seq_rank"),
}
# Re-consumption (issue 28): a separate group, computed always but used only by a model trained with
# include_seen (see feature_names), so no other model's features, fingerprint or columns change.
REPEAT_GROUP = "repeat"
REPEAT_FEATURES: tuple[str, ...] = ("play_count", "since_last", "play_share", "user_repeat_share")
ALL_FEATURES: tuple[str, ...] = tuple(f for names in FEATURE_GROUPS.values() for f in names) + REPEAT_FEATURES
RECENT_ITEMS = 10  # the "recent history" of the overlap features
# A low rating's weight in the negative features, against a dislike's 1. At 0.5 (WEAK_NEGATIVE):
# ML-100k validation NDCG@10 0.1336 against 0.1349 without the group (paired p 0.66), and the demo's
# held-out training positions 0.066 against 0.115 (40 examples): no gain, so they take no part.
LOW_RATING_FEATURE_WEIGHT = 0.0
DAY = 86_400.0


def feature_names(dropped: Sequence[str] = (), repeats: bool = False) -> list[str]:
    """The features kept when the groups in ``dropped`` are removed (an ablation); ``repeats``: with
    the re-consumption group (a model that may rank seen items)."""
    kept = [f for g, names in FEATURE_GROUPS.items() if g not in dropped for f in names]
    return kept + (list(REPEAT_FEATURES) if repeats and REPEAT_GROUP not in dropped else [])


def repeat_features(history_items: Sequence[str], positions: Sequence[int | None], rows: np.ndarray,
                    weights: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """The re-consumption group for candidate ``rows``: ``history_items`` are the history's liked item
    ids oldest first, ``positions`` their catalogue rows (None: not indexed), ``weights`` their plays
    (an interaction's weight: 1 per event in a log of events, the play count in a play-count log such
    as Last.fm hetrec). A user's plays beyond the first of each item are their replays."""
    n = len(history_items)
    w = [1.0] * n if weights is None else [max(float(x), 0.0) for x in weights]
    plays: dict[int, float] = {}
    last: dict[int, int] = {}
    for k, p in enumerate(positions):
        if p is None:
            continue
        plays[p] = plays.get(p, 0.0) + w[k]
        last[p] = k
    total = sum(plays.values())
    replays = sum(max(v - 1.0, 0.0) for v in plays.values())
    c = np.array([plays.get(int(r), 0.0) for r in rows], dtype=np.float32)
    since = np.array([np.log1p(n - 1 - last[int(r)]) if int(r) in last else np.nan for r in rows], dtype=np.float32)
    return {"play_count": np.log1p(c), "since_last": since, "play_share": c / max(total, 1e-12) if total else c * 0,
            "user_repeat_share": np.full(len(rows), replays / total if total else 0.0, dtype=np.float32)}


@dataclass
class IndexView:
    """What :class:`Retriever` reads from an index, with another catalogue and collaborative model:
    the held-out training catalogue scores with the index's text vectors and its own M."""

    catalog: Catalog
    collab: CollabModel
    text_vectors: np.ndarray
    item_ids: list[str]
    embedder: Any
    _pos: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._pos = {i: k for k, i in enumerate(self.item_ids)}

    def position(self, item_id: str) -> int | None:
        return self._pos.get(item_id)


def sparse_transitions(catalog: Catalog, collab: CollabModel) -> sparse.csr_matrix:
    """T̂ of :func:`mediarec.index.collab.transition_matrix` (same window, smoothing and scale),
    kept sparse: the blend M = α·B̂ + (1-α)·T̂ hides it, the features show it."""
    s = collab.settings
    n = len(collab.item_ids)
    rows, cols, vals = [], [], []
    for seq in item_sequences(catalog, collab.item_ids):
        for d in range(1, s.window + 1):
            if len(seq) > d:
                rows.append(seq[:-d])
                cols.append(seq[d:])
                vals.append(np.full(len(seq) - d, 1.0 / d, dtype=np.float32))
    if not rows:
        return sparse.csr_matrix((n, n), dtype=np.float32)
    t = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(n, n)).tocsr()  # duplicates are summed
    t = sparse.diags(1.0 / (np.asarray(t.sum(axis=1)).ravel() + s.transition_smoothing)) @ t
    mass = float(abs(t).sum(axis=1).mean()) if n else 1.0
    return (t / max(mass, 1e-12)).astype(np.float32).tocsr()


def _rank_in_pool(x: np.ndarray) -> np.ndarray:
    """1 for the pool's best value, ties share the order they come in."""
    r = np.empty(len(x), dtype=np.float32)
    r[np.argsort(-x, kind="stable")] = np.arange(1, len(x) + 1)
    return r


def _scaled(x: np.ndarray) -> np.ndarray:
    top = float(np.max(x)) if len(x) else 0.0
    return x / top if top > 1e-12 else x


class Signals:
    """Per-item signals of one catalogue (popularity, genres, ...) and per-history scores."""

    def __init__(self, catalog: Catalog, index: Any, collab: CollabModel, fusion: FusionSettings | None = None,
                 seq: Any | None = None):
        """``seq``: the sequential model of ``catalog`` (None: the ``seq`` group is all zeros)."""
        self.catalog = catalog
        self.view = IndexView(catalog, collab, index.text_vectors, list(index.item_ids), index.embedder)
        self.retriever = Retriever(self.view, fusion, seq=seq)
        self.collab = collab
        self.item_ids = self.view.item_ids
        n = len(self.item_ids)
        self._collab_rows = np.array([self.view.position(i) for i in collab.item_ids], dtype=np.int64)
        self.transitions = sparse_transitions(catalog, collab)
        self.alpha = collab.settings.alpha
        # Popularity, recent popularity and age, from this catalogue's log.
        pos = self.view.position
        count = np.zeros(n)
        recent = np.zeros(n)
        first = np.full(n, np.nan)
        stamps = np.array([x.timestamp for x in catalog.positives]) if catalog.positives else np.zeros(1)
        t_end = float(stamps.max())
        t_recent = float(np.quantile(stamps, 0.9))
        for x in catalog.positives:
            j = pos(x.item)
            if j is None:
                continue
            count[j] += 1
            recent[j] += x.timestamp >= t_recent
            first[j] = x.timestamp if np.isnan(first[j]) else min(first[j], x.timestamp)
        self.pop = np.log1p(count)
        self.recent_pop = np.log1p(recent)
        self.days_in_log = (t_end - first) / DAY
        years = np.array([catalog.items[i].year or np.nan for i in self.item_ids], dtype=float)
        self.years_old = (np.nanmax(years) if np.isfinite(years).any() else 0.0) - years
        self.decade = np.where(np.isfinite(years), years // 10, -1).astype(np.int64)
        self.genres = self._incidence(lambda it: it.genres)
        self.tags = self._incidence(lambda it: it.tags)
        # each item's number of genres and of tags: the denominators of the overlap features
        self.n_genres = np.asarray(self.genres.sum(axis=1)).ravel()
        self.n_tags = np.asarray(self.tags.sum(axis=1)).ravel()

    def _incidence(self, of) -> sparse.csr_matrix:
        """Item × label 0/1 matrix (genres or tags)."""
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for j, i in enumerate(self.item_ids):
            for label in sorted({str(x).lower() for x in of(self.catalog.items[i])}):  # one column order in every process
                rows.append(j)
                cols.append(vocab.setdefault(label, len(vocab)))
        return sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                                 shape=(len(self.item_ids), max(len(vocab), 1)))

    def prime_seq(self, histories: Sequence[Sequence[Interaction | str]]) -> None:
        """Score these histories with the sequential model in one batch (many times faster than
        one at a time); :meth:`fused` and :meth:`features` of each then read its scores."""
        if self.retriever.seq is not None:
            wanted = [self.catalog.history_ids(h, positives_only=True) for h in histories]
            self.retriever.prime_seq(wanted, self.retriever.seq.score_many(wanted))

    # -- per history --------------------------------------------------------------------------
    def fused(self, history: Sequence[Interaction | str], query: str | None = None,
              profile: str | None = None, include_seen: bool = False) -> np.ndarray:
        """The first stage's fused score of every item (consumed ones -inf unless ``include_seen``,
        which keeps liked ones): the pool's order."""
        return self.retriever.score_all(history, query=query, profile=profile, include_seen=include_seen)

    def features(self, history: Sequence[Interaction | str], rows: np.ndarray, fused: np.ndarray,
                 query: str | None = None, profile: str | None = None) -> np.ndarray:
        """[len(rows), len(ALL_FEATURES)] float32, columns in ALL_FEATURES order."""
        cat = self.catalog
        wanted = cat.history_ids(history, positives_only=True)
        n = len(self.item_ids)
        collab = np.zeros(n, dtype=np.float32)
        trans = np.zeros(n, dtype=np.float32)
        weights = self.retriever.strengths(history, wanted)  # the retrieval's own weights (its cached scores)
        exact = self.collab.exact_scores(wanted, weights=weights) if wanted and len(self.collab.item_ids) else None
        if exact is not None:
            collab[self._collab_rows] = exact
            hist_rows, w = self.collab._weighted_rows(wanted, None, weights)
            u = np.zeros(len(self.collab.item_ids), dtype=np.float32)
            np.add.at(u, hist_rows, w)
            trans[self._collab_rows] = self.transitions.T @ u
        ease = (collab - (1 - self.alpha) * trans) / self.alpha if self.alpha > 0 else collab
        tvec = self.retriever._text_query(wanted, None, profile)
        text = self.view.text_vectors[rows] @ tvec if tvec is not None else np.zeros(len(rows), np.float32)
        req = np.full(len(rows), np.nan, dtype=np.float32)
        if query and query.strip():
            q = self.view.embedder.embed([query.strip()])[0]
            req = self.view.text_vectors[rows] @ q
        f_pool, c_pool, t_pool, e_pool = fused[rows], collab[rows], trans[rows], ease[rows]
        neg_text, neg_collab, neg_genre = self.negative_features(
            cat.history_negatives(history, weak=LOW_RATING_FEATURE_WEIGHT), rows)
        hist_pos = [p for p in (self.view.position(i) for i in wanted) if p is not None]
        recent = hist_pos[-RECENT_ITEMS:]
        seq_all = self.retriever.seq_scores(wanted)  # the fused order's call, cached
        if seq_all is not None:
            s_pool = seq_all[rows]
            seq_col, seq_rank = seq_share(s_pool), _rank_in_pool(np.where(np.isfinite(s_pool), s_pool, -1e30))
        else:
            seq_col, seq_rank = np.zeros(len(rows)), np.zeros(len(rows))
        out = np.empty((len(rows), len(ALL_FEATURES)), dtype=np.float32)
        cols = {
            "fused": _scaled(f_pool), "fused_rank": _rank_in_pool(f_pool),
            "collab": _scaled(c_pool), "collab_rank": _rank_in_pool(c_pool),
            "trans": _scaled(t_pool), "trans_rank": _rank_in_pool(t_pool),
            "ease": _scaled(e_pool), "ease_rank": _rank_in_pool(e_pool),
            "text": _scaled(text), "text_rank": _rank_in_pool(text), "request": req,
            "pop": self.pop[rows], "recent_pop": self.recent_pop[rows], "years_old": self.years_old[rows],
            "days_in_log": self.days_in_log[rows],
            "genre_overlap": _overlap(self.genres, self.n_genres, recent, rows),
            "tag_overlap": _overlap(self.tags, self.n_tags, recent, rows),
            "decade_overlap": (np.mean(self.decade[recent][None, :] == self.decade[rows][:, None], axis=1)
                               if recent else np.zeros(len(rows))),
            "neg_text": neg_text, "neg_collab": neg_collab, "neg_genre": neg_genre,
            "history_len": np.full(len(rows), np.log1p(len(wanted))),
            "history_pop": np.full(len(rows), float(np.mean(self.pop[hist_pos])) if hist_pos else 0.0),
            "seq": seq_col, "seq_rank": seq_rank,
            **repeat_features(wanted, [self.view.position(i) for i in wanted], rows, self._plays(history)),
        }
        for k, name in enumerate(ALL_FEATURES):
            out[:, k] = cols[name]
        return out

    def _plays(self, history: Sequence[Interaction | str]) -> list[float]:
        """The weight of each entry of ``history_ids(history, positives_only=True)`` (1 without an interaction)."""
        pairs = self.catalog.history_pairs(history)
        return [x.weight if x is not None else 1.0
                for (_, x), ok in zip(pairs, pair_flags(pairs, liked=False)) if ok]

    def negative_features(self, negatives: Sequence[tuple[str, float]], rows: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(neg_text, neg_collab, neg_genre) of the candidates ``rows`` against the negatives
        ((item id, weight) pairs): max_d w_d·cos(j, d); Σ_d w_d·M[d, j] divided by the pool's largest
        magnitude; the candidate's share of genres found among the negatives, weighted (0..1)."""
        zeros = np.zeros(len(rows), dtype=np.float32)
        found = [(p, w) for p, w in ((self.view.position(i), w) for i, w in negatives) if p is not None]
        if not found:
            return zeros, zeros.copy(), zeros.copy()
        pos = np.array([p for p, _ in found], dtype=np.int64)
        w = np.array([w for _, w in found], dtype=np.float32)
        cos = self.view.text_vectors[rows] @ self.view.text_vectors[pos].T  # [rows, negatives]
        neg_text = (cos * w[None, :]).max(axis=1)
        neg_collab = zeros.copy()
        if len(self.collab.item_ids):
            exact = self.collab.exact_scores([i for i, _ in negatives], decay=1.0,
                                             weights=[wt for _, wt in negatives])
            if exact is not None:
                full = np.zeros(len(self.item_ids), dtype=np.float32)
                full[self._collab_rows] = exact
                neg_collab = full[rows]
                top = float(np.abs(neg_collab).max()) if len(neg_collab) else 0.0
                neg_collab = neg_collab / top if top > 1e-12 else neg_collab
        labels = np.asarray(self.genres[pos].multiply(w[:, None]).max(axis=0).todense()).ravel()
        cand = self.genres[rows]
        n_labels = np.asarray(cand.sum(axis=1)).ravel()
        neg_genre = (cand @ labels) / np.maximum(n_labels, 1)
        return neg_text.astype(np.float32), neg_collab.astype(np.float32), neg_genre.astype(np.float32)


def _overlap(incidence: sparse.csr_matrix, n_labels: np.ndarray, recent: list[int], rows: np.ndarray) -> np.ndarray:
    """Mean over the candidate's labels (``n_labels`` per item) of how many recent history items
    share each (0..1). Every item's row is multiplied and the pool's taken after: the same sums,
    without slicing the sparse matrix per history (a third of the features' time in training)."""
    if not recent:
        return np.zeros(len(rows))
    # how many recent items carry each label: counted from the CSR arrays (every entry is 1), the
    # same float32 sums as slicing the rows and summing them, a sixth of the time
    ptr, cols = incidence.indptr, incidence.indices
    take = np.concatenate([cols[ptr[r]:ptr[r + 1]] for r in recent])
    counts = np.bincount(take, minlength=incidence.shape[1]).astype(np.float32)
    profile = counts / len(recent)
    return (incidence @ profile)[rows] / np.maximum(n_labels[rows], 1)
