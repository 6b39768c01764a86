"""Uncertainty over users: percentile bootstrap intervals and the paired bootstrap test.

Both resample users, so one resampling index (:func:`bootstrap_index`) can be shared by every
metric of a system: its intervals then come from the same resampled user sets.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bootstrap_index", "bootstrap_ci", "paired_bootstrap_p"]


def bootstrap_index(n_values: int, n: int, seed: int) -> np.ndarray:
    """``n`` seeded resamples (with replacement) of positions ``0..n_values-1``, one per row."""
    return np.random.default_rng(seed).integers(0, n_values, size=(n, n_values))


def bootstrap_ci(values, n: int = 1000, seed: int = 0, alpha: float = 0.05,
                 index: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap (1-alpha) interval of the mean of per-user values.

    ``index``: resamples from :func:`bootstrap_index` to reuse (else drawn from ``seed``).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or n <= 0:
        return (math.nan, math.nan)
    idx = index if index is not None else bootstrap_index(v.size, n, seed)
    means = v[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def paired_bootstrap_p(a, b, n: int = 1000, seed: int = 0, index: np.ndarray | None = None) -> float:
    """Two-sided paired bootstrap p-value for "mean(a) == mean(b)" over the same users.

    The per-user differences are centred (the null hypothesis) and resampled; p is the share
    of resampled mean differences at least as extreme as the observed one, (count+1)/(n+1).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("paired samples must have the same length")
    d = a - b
    if d.size == 0:
        return math.nan
    obs = float(d.mean())
    if n <= 0:
        return math.nan
    if np.all(d == d[0]):  # no spread: equal systems, or the same difference for every user
        return 1.0 if obs == 0 else 1.0 / (n + 1)
    idx = index if index is not None else bootstrap_index(d.size, n, seed)
    means = (d - obs)[idx].mean(axis=1)
    return float((1 + np.sum(np.abs(means) >= abs(obs) - 1e-12)) / (n + 1))
