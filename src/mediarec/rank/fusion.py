"""LLM scores and retrieval scores into one ranking: rank scores, softmax, min-max fusion."""

from __future__ import annotations

import math
from typing import Any, Hashable, Iterable, Mapping, Sequence, TypeVar

T = TypeVar("T", bound=Hashable)


def complete_order(order: Iterable[T], fallback: Iterable[T]) -> list[T]:
    """``order`` (repeats dropped) followed by the fallback items it left out, in fallback order."""
    out: list[T] = []
    seen: set[T] = set()
    for x in list(order) + list(fallback):
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def scores_from_order(order: Sequence[T]) -> dict[T, float]:
    """Rank-based scores in (0, 1]: the item at 0-based rank r of L gets ``1 - r / L``.

    The first gets 1.0, the last 1/L; repeats keep their first rank (L counts distinct items).
    """
    uniq = list(dict.fromkeys(order))
    n = len(uniq)
    return {x: 1.0 - r / n for r, x in enumerate(uniq)}


def softmax(logits: Mapping[T, float], temperature: float = 1.0) -> dict[T, float]:
    """Probabilities from logits (numerically stable). NaN and -inf get 0; all -inf: uniform."""
    if not logits:
        return {}
    if not temperature or temperature <= 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, not {temperature!r}")
    vals: dict[T, float] = {}
    for k, v in logits.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("-inf")
        vals[k] = float("-inf") if math.isnan(f) else f
    finite = [v for v in vals.values() if v != float("-inf")]
    if any(v == float("inf") for v in finite):
        tops = [k for k, v in vals.items() if v == float("inf")]
        return {k: (1.0 / len(tops) if k in tops else 0.0) for k in vals}
    if not finite:
        return {k: 1.0 / len(vals) for k in vals}
    m = max(finite)
    ex = {k: (math.exp((v - m) / temperature) if v != float("-inf") else 0.0) for k, v in vals.items()}
    total = sum(ex.values())
    return {k: e / total for k, e in ex.items()}


def _minmax(scores: Mapping[T, float], keys: Iterable[T]) -> dict[T, float]:
    vals = {k: float(scores[k]) for k in keys if k in scores and _finite(scores[k])}
    if not vals:
        return {}
    lo, hi = min(vals.values()), max(vals.values())
    if hi - lo <= 1e-12 * max(1.0, abs(hi), abs(lo)):
        return {k: 0.5 for k in vals}
    return {k: (v - lo) / (hi - lo) for k, v in vals.items()}


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fuse(llm_scores: Mapping[T, float], retrieval_scores: Mapping[T, float], weight: float) -> dict[T, float]:
    """``weight * llm + (1 - weight) * retrieval`` over the candidates, best first.

    The candidates are the retrieval candidates plus any the LLM scored. Each score set is
    min-max normalised to [0, 1] over the candidates it scores (all equal -> 0.5 each); a candidate
    missing from a set (or with a NaN/inf score there) gets 0 for that set. ``weight`` 1.0 is the
    LLM only, 0.0 retrieval only. The result is ordered by fused score, ties in candidate order.
    """
    w = float(weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"fusion weight must be within [0, 1], not {weight!r}")
    keys = list(dict.fromkeys(list(retrieval_scores) + list(llm_scores)))
    ln = _minmax(llm_scores, keys)
    rn = _minmax(retrieval_scores, keys)
    fused = {k: w * ln.get(k, 0.0) + (1.0 - w) * rn.get(k, 0.0) for k in keys}
    pos = {k: i for i, k in enumerate(keys)}
    return dict(sorted(fused.items(), key=lambda kv: (-kv[1], pos[kv[0]])))
