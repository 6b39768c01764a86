"""The large-catalog collaborative model: implicit-feedback ALS (Hu, Koren & Volinsky 2008) from `implicit`.

The exact EASE + transitions model (:mod:`mediarec.index.collab`) is a dense n × n matrix, so it
holds at most ``max_items`` items. Past that, ``CollabSettings.model = "auto"`` chooses this one:
item factors ``Y`` (n × ``als_factors``) fitted by `implicit`'s conjugate-gradient ALS on the binary
user-item matrix of positive interactions, scaled by ``als_alpha`` (the confidence of an observed
interaction). Memory is linear in the items, so every item with interactions gets a vector.

A user at query time is not in the training matrix, so their vector is *folded in*: the least-squares
step ALS itself takes for a user, against the fitted ``Y``,

    x = (YᵀY + λI + Σ_i (c_i - 1) y_i y_iᵀ)⁻¹ Σ_i c_i y_i,   c_i = 1 + (als_alpha - 1) · w_i,

over the history's items i with their recency weights ``w_i`` (the newest weighs 1). With all
weights 1 that is what ``AlternatingLeastSquares.recalculate_user`` computes (c_i = als_alpha;
tests/test_collab_als.py checks it); an old item's confidence falls towards 1, the weight of an
unobserved one, never below (``als_alpha · w_i`` would go below 1 and count an old item as evidence
*against* its neighbours: held-out AUC on ML-100k fell from 0.95 to 0.77 with decay 0.85). Done here in
numpy on a cached ``YᵀY + λI`` (a k × k solve: well under a millisecond). Scores are ``Y x``.

What it costs against EASE on the same catalog is measured in docs/architecture.md ("Collaborative
model"); it has no transition part (order within a history only enters through the recency weights).
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def fit_factors(seqs: list[np.ndarray], n_items: int, factors: int, regularization: float, alpha: float,
                iterations: int, seed: int) -> np.ndarray:
    """Item factors [n_items, factors] float32 from users' positive item sequences (positions)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    if not seqs:
        return np.zeros((n_items, factors), dtype=np.float32)
    rows = np.concatenate([np.full(len(s), u, dtype=np.int64) for u, s in enumerate(seqs)])
    cols = np.concatenate(seqs)
    user_items = sparse.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(seqs), n_items))
    user_items.data[:] = 1.0  # repeated interactions: binary, as EASE sees them
    # implicit runs its own threads; a multi-threaded BLAS under them only oversubscribes the cores
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                        iterations=iterations, random_state=seed)
        model.fit(user_items, show_progress=False)
    return np.ascontiguousarray(model.item_factors, dtype=np.float32)


def regularized_gram(item_factors: np.ndarray, regularization: float) -> np.ndarray:
    """YᵀY + λI (float64), shared by every fold-in."""
    g = item_factors.T.astype(np.float64) @ item_factors.astype(np.float64)
    g[np.diag_indices(len(g))] += regularization
    return g


def fold_in(item_factors: np.ndarray, gram: np.ndarray, rows: list[int], weights: np.ndarray,
            alpha: float) -> np.ndarray:
    """The user's factor vector from their history (item rows, weights): ALS's own user step."""
    y = item_factors[rows].astype(np.float64)
    conf = 1.0 + (alpha - 1.0) * np.asarray(weights, dtype=np.float64)
    a = gram + (y * (conf - 1.0)[:, None]).T @ y
    b = conf @ y
    return np.linalg.solve(a, b).astype(np.float32)
