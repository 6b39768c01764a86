"""A list's mix of media follows the history's: a listener with one film among 34 albums gets albums.

In a catalogue of several media (films and series beside albums and tracks), the collaborative and
text sides cross media freely: one film in a music history, or a film whose description reads like
a record's, fills a list with films. The learned stage could learn the preference, but a small
catalogue (the demo: 46 users) gives it too few examples. So the order is *calibrated* (Steck,
"Calibrated recommendations", RecSys 2018) in its simplest form, a cap: the first ``i`` places hold
at most ceil(share · i) items of each medium, ``share`` being that medium's part of the liked history.
A medium the history holds is never pushed out (its cap is at least 1), one it lacks moves below
the others, and where nothing else is left the best item comes whatever its medium. A catalogue of
one medium, or a history of one medium matching every candidate, keeps its order exactly.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable, Sequence

import numpy as np

# The medium of each item kind: a film history says a lot about series and little about albums.
MEDIUM = {"movie": "video", "series": "video", "video": "video", "track": "audio", "album": "audio",
          "artist": "audio", "other": "other"}


def medium(kind: str) -> str:
    return MEDIUM.get(kind, "other")


def media_shares(kinds: Iterable[str]) -> dict[str, float]:
    """Each medium's share of the (liked) history items of these kinds; {} without any."""
    counts = Counter(medium(k) for k in kinds)
    n = sum(counts.values())
    return {m: c / n for m, c in counts.items()} if n else {}


def calibrated_order(media: Sequence[str], shares: dict[str, float], n: int) -> list[int]:
    """Indices of ``media`` (a best-first list's media) in calibrated order: the first ``n`` places
    chosen greedily (the best remaining item whose medium is under its cap, else the best
    remaining), then the rest in their order. Unchanged where every medium is within its cap."""
    if not shares or len(set(media)) < 2:
        return list(range(len(media)))
    left = list(range(len(media)))
    taken: Counter[str] = Counter()
    out: list[int] = []
    for place in range(1, min(n, len(media)) + 1):
        pick = next((k for k, i in enumerate(left)
                     if taken[media[i]] + 1 <= math.ceil(shares.get(media[i], 0.0) * place - 1e-9)), 0)
        i = left.pop(pick)
        taken[media[i]] += 1
        out.append(i)
    return out + left


def calibrate_scores(scores: np.ndarray, media: Sequence[str], shares: dict[str, float], n: int) -> np.ndarray:
    """``scores`` (one per catalogue row, ``media`` likewise) with the values of the top ``n`` finite
    rows handed out again in calibrated order: the same values, the order of :func:`calibrated_order`."""
    if not shares:
        return scores
    top = [int(r) for r in np.argsort(-scores, kind="stable")[:n] if np.isfinite(scores[r])]
    order = calibrated_order([media[r] for r in top], shares, len(top))
    if order == list(range(len(top))):
        return scores
    out = scores.copy()
    values = scores[top]  # best first
    out[[top[k] for k in order]] = values
    return out
