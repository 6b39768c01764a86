"""Non-LLM reference systems for the evaluation harness: popularity and item-kNN.

Both follow :class:`mediarec.eval.harness.Scorer` and offer the fast path ``score_array(history)``:
a dense score vector over ``self.item_ids`` (every catalog item, in catalog order), precomputed
on ``fit`` so that ranking a user costs a few numpy operations.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from mediarec.catalog.model import Catalog, Interaction


class _IndexedScorer:
    name = "base"

    def __init__(self) -> None:
        self.catalog: Catalog | None = None
        self.item_ids: list[str] = []
        self._index: dict[str, int] = {}
        self.extra: dict = {}

    def _set_items(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.item_ids = list(catalog.items)
        self._index = {i: k for k, i in enumerate(self.item_ids)}

    def _check_fitted(self) -> None:
        if not self.item_ids:
            raise RuntimeError(f"{self.name}: call fit() first")

    def score_array(self, history: Sequence[Interaction | str]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def score(self, history: Sequence[Interaction | str], candidates: list[str] | None = None) -> dict[str, float]:
        s = self.score_array(history)
        if candidates is None:
            return dict(zip(self.item_ids, s.tolist()))
        return {c: float(s[self._index[c]]) for c in candidates if c in self._index}


class PopularityScorer(_IndexedScorer):
    """Score = number of positive training interactions with the item (the same for every user)."""

    def __init__(self, name: str = "pop") -> None:
        super().__init__()
        self.name = name
        self.counts = np.zeros(0)

    def fit(self, train: Catalog) -> None:
        self._set_items(train)
        idx = np.fromiter((self._index[x.item] for x in train.positives), dtype=np.int64,
                          count=len(train.positives))
        self.counts = np.bincount(idx, minlength=len(self.item_ids)).astype(np.float64)

    def score_array(self, history: Sequence[Interaction | str]) -> np.ndarray:
        self._check_fitted()
        return self.counts.copy()


class ReplayScorer(PopularityScorer):
    """The user's own most played items first (plays in the history, ties to the most recent), then
    popularity: what a "play again" list is without any model, the floor a repeat-aware system must
    beat where targets may be repeats (issue 28). Disliked items are left out."""

    def __init__(self, name: str = "replay") -> None:
        super().__init__(name)

    def score_array(self, history: Sequence[Interaction | str]) -> np.ndarray:
        s = super().score_array(history)
        s = s / (s.max() + 1.0) if s.size else s  # popularity below 1: any replay ranks first
        ids = self.catalog.history_ids(history, positives_only=True)
        for age, i in enumerate(reversed(ids)):
            k = self._index.get(i)
            if k is not None:
                s[k] = (s[k] if s[k] >= 1.0 else 1.0) + 1.0 + 1.0 / (len(ids) + age + 1)
        return s


class ItemKNNScorer(_IndexedScorer):
    """Item-item cosine kNN on the binary user-item matrix of the training log's positives.

    ``sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|)`` (users who interacted with both), keeping
    each item's ``k`` most similar items (neighbours). A user's score for item j is
    ``Σ_h w_h · sim(h, j)`` over their history items h (disliked ones left out), with ``w_h = decay^(age of h)``
    (the newest item weighs 1, each older one ×decay; decay=1 weighs all alike).

    The similarity matrix is built in row blocks (``block`` rows, default about 4M entries),
    so memory stays small even for 17k-item catalogues. Measured (leave-last-out, full ranking,
    all users, HR@10): decay 0.6 helps on MovieLens (timestamps mean something) and hurts on
    Last.fm (no timestamps: the history order is file order), so the default is 1.
    """

    def __init__(self, name: str = "itemknn", k: int = 100, decay: float = 1.0, block: int | None = None) -> None:
        super().__init__()
        if k < 1:
            raise ValueError("k must be >= 1")
        if not 0 < decay <= 1:
            raise ValueError("decay must be in (0, 1]")
        self.name = name
        self.k = k
        self.decay = decay
        self.block = block
        self.sim: sp.csr_matrix | None = None

    def fit(self, train: Catalog) -> None:
        self._set_items(train)
        n = len(self.item_ids)
        users: dict[str, int] = {}
        rows, cols = [], []
        for x in train.positives:
            rows.append(users.setdefault(x.user, len(users)))
            cols.append(self._index[x.item])
        x = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(users), n))
        x.sum_duplicates()
        x.data[:] = 1.0  # binary
        xt = x.T.tocsr()
        norms = np.sqrt(np.asarray(xt.sum(axis=1)).ravel()).astype(np.float32)
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        k = min(self.k, max(n - 1, 1))
        # rows per block: about 4M similarity entries at a time (~50 MB with the argpartition)
        block = self.block or max(16, (1 << 22) // max(n, 1))
        out_r, out_c, out_v = [], [], []
        for r0 in range(0, n, block):
            r1 = min(n, r0 + block)
            co = (xt[r0:r1] @ x).toarray()  # co-occurrence counts, (r1-r0) x n
            co *= inv[r0:r1, None]
            co *= inv[None, :]
            co[np.arange(r1 - r0), np.arange(r0, r1)] = 0.0
            if k < n:
                nb = np.argpartition(-co, k - 1, axis=1)[:, :k]
            else:
                nb = np.broadcast_to(np.arange(n), co.shape)
            vals = np.take_along_axis(co, nb, axis=1)
            keep = vals > 0
            rr = np.broadcast_to(np.arange(r0, r1)[:, None], nb.shape)
            out_r.append(rr[keep])
            out_c.append(nb[keep])
            out_v.append(vals[keep])
        self.sim = sp.csr_matrix((np.concatenate(out_v).astype(np.float64),
                                  (np.concatenate(out_r), np.concatenate(out_c))), shape=(n, n))

    def score_array(self, history: Sequence[Interaction | str]) -> np.ndarray:
        self._check_fitted()
        ids = [self._index[i] for i in self.catalog.history_ids(history, positives_only=True) if i in self._index]
        n = len(self.item_ids)
        if not ids:
            return np.zeros(n)
        w = self.decay ** np.arange(len(ids) - 1, -1, -1, dtype=np.float64)
        # Σ_h w_h · sim[h, :] — a sparse row gather and a weighted column sum
        rows = self.sim[np.asarray(ids)]
        return np.asarray(rows.T @ w).ravel()
