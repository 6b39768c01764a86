"""Ranking metrics and the ranking primitives they are computed from.

Rank and ties
    ``rank = 1 + #{candidates scoring strictly higher}
    + #{candidates scoring the same whose tie key is higher}``. The tie key is a fixed 64-bit
    hash of ``(seed, item id)``: ties are broken in an order unrelated to relevance, so they
    neither favour a system (optimistic ties) nor punish it (pessimistic ties), and a run is
    exactly reproducible. An item a system does not score (missing from its dict, ``-inf`` or
    NaN) is unranked; if that is the target its rank is ``inf`` ("not ranked") and every metric
    gives it 0.

Every metric is vectorised over per-user ranks (rank 1 = top; inf, None or NaN = not ranked)
and returns one value per user, so the harness can bootstrap and pair them. Each user has one
held-out target, so recall@k would equal hit@k and is not reported.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["hit_at_k", "ndcg_at_k", "mrr", "coverage", "mean_popularity", "stable_u64", "tie_keys",
           "rank_of_target", "top_k"]


def _ranks(ranks: Iterable[float | None] | np.ndarray) -> np.ndarray:
    r = np.array([np.inf if x is None else x for x in ranks], dtype=np.float64) \
        if not isinstance(ranks, np.ndarray) or ranks.dtype == object else ranks.astype(np.float64)
    r = np.where(np.isnan(r), np.inf, r)
    if np.any(r < 1):
        raise ValueError("ranks are 1-based")
    return r


def hit_at_k(ranks, k: int) -> np.ndarray:
    """Per user: 1 if the target is in the top k, else 0."""
    return (_ranks(ranks) <= k).astype(np.float64)


def ndcg_at_k(ranks, k: int) -> np.ndarray:
    """Per user: 1/log2(rank+1) if rank <= k, else 0 (one target, so the ideal DCG is 1)."""
    r = _ranks(ranks)
    out = np.zeros_like(r)
    m = r <= k
    out[m] = 1.0 / np.log2(r[m] + 1.0)
    return out


def mrr(ranks) -> np.ndarray:
    """Per user: 1/rank (0 if not ranked). Its mean is the mean reciprocal rank."""
    r = _ranks(ranks)
    out = np.zeros_like(r)
    m = np.isfinite(r)
    out[m] = 1.0 / r[m]
    return out


def coverage(recommended_lists: Iterable[Sequence[str]], n_items: int) -> float:
    """Share of the catalog's items that appear in at least one recommendation list."""
    if n_items <= 0:
        return math.nan
    return len({i for lst in recommended_lists for i in lst}) / n_items


def mean_popularity(recommended_lists: Iterable[Sequence[str]], item_popularity: Mapping[str, float]) -> float:
    """Mean popularity (e.g. training interaction count) over every recommended item."""
    vals = [item_popularity.get(i, 0.0) for lst in recommended_lists for i in lst]
    return float(np.mean(vals)) if vals else math.nan


def stable_u64(text: str) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() is salted per run)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def tie_keys(item_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """The tie-breaking key of each item: a fixed 64-bit hash of (seed, item id)."""
    return np.array([stable_u64(f"{seed}\x00{i}") for i in item_ids], dtype=np.uint64)


def rank_of_target(scores: np.ndarray, keys: np.ndarray, target: int) -> float:
    """1-based rank of ``scores[target]`` among ``scores`` (ties by ``keys``); inf if unscored.

    Entries that are not candidates must already be -inf.
    """
    st = scores[target]
    if np.isnan(st) or st == -np.inf:
        return math.inf
    higher = int(np.count_nonzero(scores > st))
    tied = int(np.count_nonzero((scores == st) & (keys > keys[target])))
    return float(1 + higher + tied)


def top_k(scores: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best finite scores, ties by key (the same order as the ranks)."""
    finite = np.flatnonzero(scores > -np.inf)
    if finite.size == 0:
        return finite
    s = scores[finite]
    if finite.size > k:
        kth = np.partition(s, s.size - k)[s.size - k]
        keep = s >= kth
        finite, s = finite[keep], s[keep]
    # primary: score descending; secondary: tie key descending (a higher key wins a tie)
    order = np.lexsort((np.iinfo(np.uint64).max - keys[finite], -s))
    return finite[order[:k]]
