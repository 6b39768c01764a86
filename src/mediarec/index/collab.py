"""Collaborative scoring learned from interactions: an exact item-item model, plus its factors for Chroma.

The model blends two item-to-item signals into one matrix ``M`` (n × n over the modelled items):

* EASE (Steck 2019): a closed-form item-item regression on the binary user-item matrix,
  ``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹`` and a zero diagonal. What co-occurs.
* Transitions: how often item j follows item i within ``window`` steps of a user's
  time-ordered history (weighted 1/step, row-normalised with a smoothing constant). What comes next.

``M = α·B̂ + (1-α)·T̂`` (each scaled to the same mean row mass). A user's scores are exact:
``score = Σ_i decay^(age_i) · M[i, :]`` over the history (:meth:`CollabModel.exact_scores`). The
ranking uses ``M`` itself because a rank-256 factorisation of it lost accuracy (issue 11: NDCG@10
0.0736 against 0.081 unfactorised on the llamarec split of latest-small; on MovieLens 100k,
leave-last-out, full ranking, the collab system went from HR@10 0.209 / NDCG@10 0.114 to 0.214 / 0.116).

The factorisation ``M ≈ Q Vᵀ`` (randomised truncated SVD, ``Q = U·S``) is still computed: its
vectors live in Chroma for nearest-neighbour queries (``u = Σ_i decay^(age_i) · Q[i]``, ``u · V[j]``),
which give :meth:`Retriever.candidates` a pool that it re-scores with ``M``.

Memory: ``M`` is dense float32, so ``max_items`` (8000) bounds it at 8000² × 4 B = 256 MB in memory
and on disk (fitting peaks at about four such matrices); only the ``max_items`` most-interacted items
with at least ``min_count`` interactions are modelled, the rest are found through the text side.
Past ``als_from_items`` items with interactions (20,000), ``model="auto"`` switches to implicit ALS
(:mod:`mediarec.index.collab_als`): factors for every item, no exact matrix, scores ``Y·x`` with the
user folded in. ``MEDIAREC_COLLAB_MODEL=ease|als`` forces one (to compare them).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from pydantic import BaseModel

from mediarec.catalog.model import STRENGTH_EVENTS, Catalog, model_flags
from mediarec.infra.threads import single_threaded_blas

TUNED_FIELDS = ("ease_lambda", "alpha", "window", "decay")
LATER_FIELDS = ("model", "als_from_items", "als_factors", "als_regularization", "als_alpha", "als_iterations",
                "strength")
#: A log whose plays and watches mostly weigh other than 1 has strengths: ``strength`` defaults to log1p.
#: Last.fm's play counts: all of them; the demo's replay counts: 25% (its 46 users cannot tell whether
#: they help, so it keeps every item alike).
STRENGTH_SHARE = 0.5


class CollabSettings(BaseModel):
    """Everything that changes the learned model (it is part of the index fingerprint)."""

    rank: int = 256
    ease_lambda: float = 500.0
    window: int = 5
    transition_smoothing: float = 5.0
    alpha: float = 0.5
    decay: float = 0.85
    min_count: int = 1
    max_items: int = 8000
    seed: int = 0
    ordered: bool = True
    # Which model: "ease" (exact, dense, at most max_items items), "als" (factors, every item; see
    # mediarec.index.collab_als) or "auto": ALS when more than als_from_items items have interactions.
    # Between max_items and als_from_items EASE keeps the max_items most-interacted ones: on
    # latest-small (9,724 rated films, 8,000 modelled) it beats ALS over all of them (docs/architecture.md).
    model: Literal["auto", "ease", "als"] = "auto"
    als_from_items: int = 20_000
    als_factors: int = 128
    als_regularization: float = 0.05
    als_alpha: float = 2.0
    als_iterations: int = 15
    # How a history item's interaction strength (``weight`` of a play or watch: play counts, watch
    # time) weighs it in the collaborative query: "none" (every item alike) or "log1p" (log(1 + weight),
    # scaled to mean 1 over the history). Last.fm validation users: NDCG@10 0.1222 -> 0.1269 with log1p
    # play counts (eval/results/interaction-strength-val); ratings as weights lowered ML-100k's.
    strength: Literal["none", "log1p"] = "none"

    @classmethod
    def for_catalog(cls, catalog: Catalog, use_tuned: bool = True, **overrides) -> "CollabSettings":
        """Defaults that fit the log, then the choice `mediarec tune` stored for it, then ``overrides``.

        Without a real time order, recency and transitions mean nothing: when more than 80% of the
        interactions share their timestamp with another of the same user (Last.fm hetrec has
        listening counts, no listening times: 90% tied; MovieLens 100k, rated in bursts within one
        second, is 51% tied and strongly ordered), the history's order is file order: then
        decay = 1 and α = 1 (EASE alone), with λ = 100, the best of {50, 100, 500} on Last.fm
        validation users (NDCG@10 0.136 against 0.091 with the time-ordered defaults).

        A stored choice (``$MEDIAREC_HOME/tuned/<catalog>.json``) applies only to the catalog it
        was tuned on and its leave-last-out training parts (their fingerprints are stored with it).
        """
        base: dict = {} if is_time_ordered(catalog) else {"ordered": False, "decay": 1.0, "alpha": 1.0,
                                                          "ease_lambda": 100.0}
        if has_strengths(catalog):
            base["strength"] = "log1p"
        if use_tuned:
            from mediarec.index.tuning import stored_choice

            base.update(stored_choice(catalog) or {})
        import os

        if os.environ.get("MEDIAREC_COLLAB_MODEL"):  # "ease" | "als" | "auto": force the model (e.g. to compare them)
            base["model"] = os.environ["MEDIAREC_COLLAB_MODEL"]
        return cls(**{**base, **overrides})

    def key(self) -> str:
        """Fields at their defaults that an EASE index predates are left out, so indexes built
        before ALS existed keep their fingerprints."""
        defaults = CollabSettings.model_fields
        dump = {k: v for k, v in self.model_dump().items()
                if not (k in LATER_FIELDS and v == defaults[k].default)}
        return hashlib.sha256(json.dumps(dump, sort_keys=True).encode()).hexdigest()[:16]

    def chosen_model(self, n_items_with_interactions: int) -> str:
        """"ease" or "als" for a log in which that many items pass ``min_count``."""
        if self.model != "auto":
            return self.model
        return "als" if n_items_with_interactions > max(self.max_items, self.als_from_items) else "ease"


def is_time_ordered(catalog: Catalog) -> bool:
    """Whether the log has a usable time order (at most 80% of interactions tied within their user)."""
    tied = total = 0
    for hist in catalog.by_user.values():
        stamps = [x.timestamp for x in hist]
        tied += len(stamps) - len(set(stamps))
        total += len(stamps)
    return total == 0 or tied / total <= 0.8


def has_strengths(catalog: Catalog) -> bool:
    """Whether the log's plays and watches carry strengths: more than :data:`STRENGTH_SHARE` of
    them weigh other than 1 (Last.fm's play counts do; MovieLens ratings have weight 1)."""
    xs = [x for x in catalog.positives if x.event in STRENGTH_EVENTS]
    return bool(xs) and sum(x.weight != 1.0 for x in xs) > STRENGTH_SHARE * len(xs)


def strength_weights(strength: str, raw: Sequence[float | None], n: int | None = None) -> list[float] | None:
    """History weights from interaction strengths (``raw``: one per history item, None where the
    entry carries none: a like, a rating, a bare item); ``n`` > len(raw) appends entries that carry
    none (a request's reference item). ``log1p``: log(1 + strength), scaled to mean 1 over the
    entries with one; the others weigh 1. None where nothing varies (every item weighs alike)."""
    if strength == "none":
        return None
    vals = [np.log1p(max(float(r), 0.0)) for r in raw if r is not None]
    if len(set(vals)) < 2:
        return None
    mean = float(np.mean(vals)) or 1.0
    out = [1.0 if r is None else float(np.log1p(max(float(r), 0.0))) / mean for r in raw]
    return out + [1.0] * max((n or len(out)) - len(out), 0)


def recency_weights(n: int, decay: float) -> np.ndarray:
    """Weights of a history of n items, oldest first: the newest weighs 1, each step back ×decay."""
    return decay ** np.arange(n - 1, -1, -1, dtype=np.float64)


def _randomized_svd(m: np.ndarray, rank: int, seed: int, n_iter: int = 4):
    """Truncated SVD by randomised range finding (Halko et al.); exact enough for rank ≪ n.
    On one BLAS thread: its QRs are many thin steps, and OpenBLAS's pool made them 10-90× slower
    on 2 busy cores (n = 303: 3.6 s against 0.04 s; n = 3,416: 7.2 s against 0.6 s)."""
    with single_threaded_blas():
        n = m.shape[0]
        rank = min(rank, n)
        rng = np.random.default_rng(seed)
        omega = rng.standard_normal((m.shape[1], min(n, rank + 16))).astype(m.dtype)
        y = m @ omega
        for _ in range(n_iter):
            y, _ = np.linalg.qr(y)
            y = m @ (m.T @ y)
        q, _ = np.linalg.qr(y)
        b = q.T @ m
        ub, s, vt = np.linalg.svd(b, full_matrices=False)
        u = q @ ub
        return u[:, :rank], s[:rank], vt[:rank]


# -- the parts of M, separately, so tuning refits only what a hyper-parameter changes ------------
def modelled_items(catalog: Catalog, s: CollabSettings, cap: bool = True) -> list[str]:
    """The items with at least ``min_count`` positive interactions, most-interacted first; with
    ``cap``, the ``max_items`` first (what the dense EASE model holds)."""
    counts: dict[str, int] = {}
    for x in catalog.positives:
        counts[x.item] = counts.get(x.item, 0) + 1
    kept = [i for i, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if c >= s.min_count]
    return kept[: s.max_items] if cap else kept


def item_sequences(catalog: Catalog, item_ids: Sequence[str]) -> list[np.ndarray]:
    """Each user's positive history as positions into ``item_ids`` (oldest first; unmodelled dropped).
    A dislike is no co-occurrence: models learn from :attr:`Catalog.positives` only
    (:func:`~mediarec.catalog.model.model_flags`)."""
    pos = {i: k for k, i in enumerate(item_ids)}
    seqs = []
    for hist in catalog.by_user.values():
        seq = np.fromiter((pos[x.item] for x, ok in zip(hist, model_flags(hist)) if ok and x.item in pos),
                          dtype=np.int64)
        if len(seq):
            seqs.append(seq)
    return seqs


def gram_matrix(seqs: list[np.ndarray], n: int) -> np.ndarray:
    """XᵀX of the binary user-item matrix (dense: n ≤ max_items)."""
    gram = np.zeros((n, n), dtype=np.float32)
    for seq in seqs:
        uniq = np.unique(seq)
        gram[np.ix_(uniq, uniq)] += 1.0
    return gram


def _unit_row_mass(m: np.ndarray) -> np.ndarray:
    m /= max(float(np.abs(m).sum(axis=1).mean()), 1e-12)
    return m


def ease_matrix(gram: np.ndarray, ease_lambda: float) -> np.ndarray:
    """B̂: the EASE weights (zero diagonal) scaled to mean absolute row mass 1; ``gram`` is kept."""
    reg = gram.astype(np.float64)
    reg[np.diag_indices(len(reg))] += ease_lambda
    p = np.linalg.inv(reg)
    del reg
    b = (-p / np.diag(p)[None, :]).astype(np.float32)
    del p
    np.fill_diagonal(b, 0.0)
    return _unit_row_mass(b)


def transition_matrix(seqs: list[np.ndarray], n: int, window: int, smoothing: float) -> np.ndarray:
    """T̂: i → j within ``window`` steps, weighted 1/step, row-normalised with ``smoothing``, scaled
    to mean absolute row mass 1."""
    trans = np.zeros((n, n), dtype=np.float32)
    for seq in seqs:
        for d in range(1, window + 1):
            if len(seq) > d:
                np.add.at(trans, (seq[:-d], seq[d:]), 1.0 / d)
    trans /= trans.sum(axis=1, keepdims=True) + smoothing
    return _unit_row_mass(trans)


def blend(ease: np.ndarray, transitions: np.ndarray | None, alpha: float) -> np.ndarray:
    """M = α·B̂ + (1-α)·T̂ (float32)."""
    if transitions is None or alpha >= 1.0:
        return (alpha * ease).astype(np.float32)
    return (alpha * ease + (1.0 - alpha) * transitions).astype(np.float32)


@dataclass
class CollabModel:
    """The exact item-item matrix of the modelled items and its factors (for Chroma); or, for
    ``kind == "als"``, the ALS item factors alone (``matrix`` None, ``query_vectors`` = ``item_vectors``)."""

    item_ids: list[str]
    query_vectors: np.ndarray  # [n, r]  Q = U·S  (ALS: Y)
    item_vectors: np.ndarray  # [n, r]  V  (ALS: Y)
    settings: CollabSettings
    matrix: np.ndarray | None = None  # [n, n] float32: M, what ranks (EASE only)
    kind: str = "ease"
    _pos: dict[str, int] = field(default_factory=dict, repr=False)
    _gram: np.ndarray | None = field(default=None, repr=False)
    # the last exact_scores asked for and its answer: ranking one history asks twice (the fused order,
    # then the learned stage's features)
    _last_exact: tuple | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self._pos = {i: k for k, i in enumerate(self.item_ids)}
        if self.kind == "als":
            from mediarec.index.collab_als import regularized_gram

            self._gram = regularized_gram(self.item_vectors, self.settings.als_regularization)

    @property
    def dim(self) -> int:
        return self.item_vectors.shape[1]

    def _weighted_rows(self, history: Sequence[str], decay: float | None,
                       weights: Sequence[float] | None) -> tuple[list[int], np.ndarray]:
        decay = self.settings.decay if decay is None else decay
        w = recency_weights(len(history), decay)
        if weights is not None:
            w = w * np.asarray(weights, dtype=np.float64)
        rows, ws = [], []
        for item, wi in zip(history, w):
            k = self._pos.get(item)
            if k is not None:
                rows.append(k)
                ws.append(wi)
        return rows, np.asarray(ws, dtype=np.float32)

    def user_vector(self, history: Sequence[str], decay: float | None = None,
                    weights: Sequence[float] | None = None) -> np.ndarray | None:
        """Recency-weighted query vector of a history (item ids, oldest first) for a Chroma query;
        None if no item is known."""
        rows, ws = self._weighted_rows(history, decay, weights)
        if not rows:
            return None
        if self.kind == "als":
            from mediarec.index.collab_als import fold_in

            return fold_in(self.item_vectors, self._gram, rows, ws, self.settings.als_alpha)
        return ws @ self.query_vectors[rows]

    def exact_scores(self, history: Sequence[str], decay: float | None = None,
                     weights: Sequence[float] | None = None) -> np.ndarray | None:
        """Scores of all modelled items (aligned with item_ids): the recency-weighted sum of the
        history's rows of M; None if no item of the history is modelled."""
        key = (tuple(history), decay, None if weights is None else tuple(weights))
        last = self._last_exact  # one read: another thread may replace it meanwhile
        if last is not None and last[0] == key:
            return None if last[1] is None else last[1].copy()
        out = self._exact_scores(history, decay, weights)
        self._last_exact = (key, out)
        return None if out is None else out.copy()

    def _exact_scores(self, history: Sequence[str], decay: float | None,
                      weights: Sequence[float] | None) -> np.ndarray | None:
        if self.kind == "als":
            u = self.user_vector(history, decay, weights)
            return None if u is None else self.item_vectors @ u
        if self.matrix is None:
            raise ValueError("this CollabModel holds factors only (fit it, or load the index's exact matrix)")
        rows, ws = self._weighted_rows(history, decay, weights)
        if not rows:
            return None
        n = len(self.item_ids)
        if len(rows) * 4 < n:  # a short history: gather its rows
            return ws @ self.matrix[rows]
        dense = np.zeros(n, dtype=np.float32)  # a long one: one matrix-vector product, no big gather
        np.add.at(dense, rows, ws)
        return dense @ self.matrix

    @classmethod
    def fit(cls, catalog: Catalog, settings: CollabSettings | None = None, factorise: bool = True) -> "CollabModel":
        """Learn M from the positive interactions; ``factorise=False`` skips the SVD (no Chroma vectors).
        The model is the one :meth:`CollabSettings.chosen_model` picks; ALS is always factors."""
        s = settings or CollabSettings()
        everything = modelled_items(catalog, s, cap=False)
        if everything and s.chosen_model(len(everything)) == "als":
            from mediarec.index.collab_als import fit_factors

            y = fit_factors(item_sequences(catalog, everything), len(everything), s.als_factors,
                            s.als_regularization, s.als_alpha, s.als_iterations, s.seed)
            return cls(everything, y, y, s, None, kind="als")
        kept = everything[: s.max_items]
        n = len(kept)
        if n == 0:
            return cls([], np.zeros((0, 1), np.float32), np.zeros((0, 1), np.float32), s,
                       np.zeros((0, 0), np.float32))
        seqs = item_sequences(catalog, kept)
        ease = ease_matrix(gram_matrix(seqs, n), s.ease_lambda)
        trans = transition_matrix(seqs, n, s.window, s.transition_smoothing) if s.alpha < 1.0 else None
        m = blend(ease, trans, s.alpha)
        del ease, trans
        if not factorise:
            return cls(kept, np.zeros((n, 0), np.float32), np.zeros((n, 0), np.float32), s, m)
        u, sv, vt = _randomized_svd(m, s.rank, s.seed)
        return cls(kept, (u * sv).astype(np.float32), vt.T.astype(np.float32).copy(), s, m)
