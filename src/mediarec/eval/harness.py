"""Offline evaluation declared as data: a protocol file, a split, metrics and a harness.

In the spirit of RecBole, *how* a system is evaluated is a small JSON document
(:class:`EvalProtocol`, files in ``eval/protocols/``), not code. The harness
(:func:`evaluate`) fits every system on the same training log, ranks the same held-out
targets against the same candidates, and reports per-user metrics with bootstrap
confidence intervals and a paired significance test against a reference system.

Split — leave-last-out (:func:`leave_last_out`)
    Each user's interactions are sorted by ``(timestamp, position in the log)``: ties on the
    timestamp keep file order, so the split is deterministic. The **last** interaction is the
    test target; the one **before** it the validation target.

    * ``train_val_catalog`` = every interaction except each user's test target. Systems are
      fitted on it for the *test* phase; a user's history is their part of it.
    * ``train_catalog`` = every interaction except each user's test and validation targets.
      Systems are fitted on it for the *valid* phase; a user's history is their part of it.
    * A user with a single interaction has a test target and no validation target; their test
      history is empty and they are still evaluated (a system gets an empty history).

Candidates
    ``full`` mode ranks the target among every catalog item the user has *not* interacted with
    (anywhere in their log) plus the target itself: known positives other than the target are
    never counted as negatives. ``sampled`` mode (the LLMRank protocol) ranks the target among
    ``n_negatives`` items drawn uniformly from those same unseen items. Negatives depend only on
    ``(seed, user)``, so every system sees exactly the same candidates.

Rank and ties
    ``rank = 1 + #{candidates scoring strictly higher}
    + #{candidates scoring the same whose tie key is higher}``. The tie key is a fixed 64-bit
    hash of ``(seed, item id)``: ties are broken in an order unrelated to relevance, so they
    neither favour a system (optimistic ties) nor punish it (pessimistic ties), and a run is
    exactly reproducible. An item a system does not score (missing from its dict, ``-inf`` or
    NaN) is unranked; if that is the target its rank is ``inf`` ("not ranked") and every metric
    gives it 0.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from mediarec.catalog.model import Catalog, Interaction
from mediarec.infra.atomic import atomic_write_bytes, atomic_write_text
from mediarec.errors import ConfigError
from mediarec.infra.progress import counting

__all__ = [
    "EvalProtocol", "Split", "leave_last_out", "Scorer", "ArrayScorer",
    "hit_at_k", "ndcg_at_k", "recall_at_k", "mrr", "bootstrap_ci", "paired_bootstrap_p",
    "paired_permutation_p", "coverage", "mean_popularity", "tie_keys", "rank_of_target",
    "sample_users", "sample_negatives", "EvalReport", "evaluate", "write_report",
]

PROTOCOLS_DIR = Path(__file__).resolve().parent / "protocols"


# ----------------------------------------------------------------------------------------------
# Protocol
# ----------------------------------------------------------------------------------------------
class EvalProtocol(BaseModel):
    """How a system is evaluated; loaded from ``eval/protocols/*.json``.

    ``users``: evaluate a seeded sample of this many users (None = all eligible users).
    ``validation_users``: the same for the *valid* phase (None = as many as ``users``).
    ``min_history``: users with fewer interactions than this in the whole log are not evaluated
    (the default 1 keeps every user, including one-interaction users with an empty history).
    ``bootstrap``: resamples for the confidence intervals and the paired test (0 = none).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    dataset: str | None = None
    split: Literal["leave-last-out"] = "leave-last-out"
    mode: Literal["full", "sampled"] = "full"
    n_negatives: int = Field(19, ge=1)
    users: int | None = Field(None, ge=1)
    seed: int = 0
    validation_users: int | None = Field(None, ge=1)
    ks: tuple[int, ...] = (5, 10, 20)
    min_history: int = Field(1, ge=1)
    bootstrap: int = Field(1000, ge=0)

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(k < 1 for k in v):
            raise ValueError("ks must be positive cut-offs")
        return tuple(sorted(set(v)))

    @classmethod
    def load(cls, path: str | Path) -> "EvalProtocol":
        """A protocol file; a name without a path ("ml-100k-full") is looked up in eval/protocols."""
        p = Path(path)
        if not p.exists() and p.suffix != ".json" and len(p.parts) == 1:
            p = PROTOCOLS_DIR / f"{p.name}.json"
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such protocol file") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}:{e.lineno}: not valid JSON: {e.msg}") from None
        data.setdefault("name", p.stem)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "(root)"
            raise ConfigError(f"{p}: bad protocol field {loc}: {first['msg']}") from None

    def save(self, path: str | Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.model_dump(mode="json"), indent=2) + "\n")


# ----------------------------------------------------------------------------------------------
# Split
# ----------------------------------------------------------------------------------------------
@dataclass
class Split:
    """Leave-last-out split of a catalog's interaction log (see the module docstring).

    ``test_history[u]``: u's interactions minus the test target, oldest first (u's part of
    ``train_val_catalog``). ``valid_history[u]``: minus the test and the validation targets
    (u's part of ``train_catalog``); only users with a validation target appear in ``valid``
    and ``valid_history``. ``seen[u]``: every item u interacted with, targets included.
    """

    catalog: Catalog
    train_catalog: Catalog
    train_val_catalog: Catalog
    test: dict[str, str]
    valid: dict[str, str]
    test_history: dict[str, list[Interaction]]
    valid_history: dict[str, list[Interaction]]
    seen: dict[str, set[str]] = field(repr=False)
    n_interactions: dict[str, int] = field(repr=False)

    def targets(self, phase: str = "test") -> dict[str, str]:
        return self.test if _phase(phase) == "test" else self.valid

    def histories(self, phase: str = "test") -> dict[str, list[Interaction]]:
        return self.test_history if _phase(phase) == "test" else self.valid_history

    def fit_catalog(self, phase: str = "test") -> Catalog:
        return self.train_val_catalog if _phase(phase) == "test" else self.train_catalog


def _phase(phase: str) -> str:
    if phase not in ("test", "valid"):
        raise ConfigError(f"unknown evaluation phase {phase!r} (use 'test' or 'valid')")
    return phase


def leave_last_out(catalog: Catalog) -> Split:
    """Hold out each user's last interaction (test) and the one before it (validation)."""
    per_user: dict[str, list[tuple[float, int]]] = {}
    for pos, x in enumerate(catalog.interactions):
        per_user.setdefault(x.user, []).append((x.timestamp, pos))
    inter = catalog.interactions
    test: dict[str, str] = {}
    valid: dict[str, str] = {}
    test_hist: dict[str, list[Interaction]] = {}
    valid_hist: dict[str, list[Interaction]] = {}
    seen: dict[str, set[str]] = {}
    n_inter: dict[str, int] = {}
    drop_test: set[int] = set()
    drop_valid: set[int] = set()
    for user, keys in per_user.items():
        keys.sort()
        order = [inter[p] for _, p in keys]
        n_inter[user] = len(order)
        seen[user] = {x.item for x in order}
        test[user] = order[-1].item
        drop_test.add(keys[-1][1])
        test_hist[user] = order[:-1]
        if len(order) >= 2:
            valid[user] = order[-2].item
            drop_valid.add(keys[-2][1])
            valid_hist[user] = order[:-2]
    train_val = [x for p, x in enumerate(inter) if p not in drop_test]
    train = [x for p, x in enumerate(inter) if p not in drop_test and p not in drop_valid]
    return Split(catalog=catalog, train_catalog=catalog.replace(interactions=train),
                 train_val_catalog=catalog.replace(interactions=train_val), test=test, valid=valid,
                 test_history=test_hist, valid_history=valid_hist, seen=seen, n_interactions=n_inter)


# ----------------------------------------------------------------------------------------------
# Systems
# ----------------------------------------------------------------------------------------------
@runtime_checkable
class Scorer(Protocol):
    """A ranking system as the harness sees it.

    ``score`` returns scores (higher = better) for the candidate item ids; for
    ``candidates=None`` for as many catalog items as it can. Items it does not return are
    unranked (-inf). A system may keep a JSON-serialisable dict ``extra`` (e.g. an LLM's
    parse-failure rate); the harness copies it into the report after the system's run, and
    ``extra["position_pairs"]`` (``(prompt_position, llm_rank)`` pairs) feeds position_bias.png.
    """

    name: str

    def fit(self, train: Catalog) -> None: ...

    def score(self, history: list[Interaction], candidates: list[str] | None = None) -> dict[str, float]: ...


@runtime_checkable
class ArrayScorer(Scorer, Protocol):
    """The fast path: a dense score vector over ``item_ids`` (the harness prefers it)."""

    item_ids: list[str]

    def score_array(self, history: list[Interaction]) -> np.ndarray: ...


# ----------------------------------------------------------------------------------------------
# Metrics (vectorised over per-user ranks; rank 1 = top, inf/None/NaN = not ranked)
# ----------------------------------------------------------------------------------------------
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


def recall_at_k(ranks, k: int) -> np.ndarray:
    """Per user: the share of the user's targets in the top k; with one target, = hit@k."""
    return hit_at_k(ranks, k)


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


def _boot_index(n_values: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n_values, size=(n, n_values))


def bootstrap_ci(values, n: int = 1000, seed: int = 0, alpha: float = 0.05,
                 _index: np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap (1-alpha) interval of the mean of per-user values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return (math.nan, math.nan)
    if n <= 0:
        return (math.nan, math.nan)
    idx = _index if _index is not None else _boot_index(v.size, n, seed)
    means = v[idx].mean(axis=1)
    lo, hi = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(lo), float(hi))


def paired_bootstrap_p(a, b, n: int = 1000, seed: int = 0, _index: np.ndarray | None = None) -> float:
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
    idx = _index if _index is not None else _boot_index(d.size, n, seed)
    means = (d - obs)[idx].mean(axis=1)
    return float((1 + np.sum(np.abs(means) >= abs(obs) - 1e-12)) / (n + 1))


def paired_permutation_p(a, b, n: int = 1000, seed: int = 0) -> float:
    """Two-sided paired permutation (random sign-flip) test p-value for mean(a) == mean(b)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = a - b
    if d.size == 0:
        return math.nan
    obs = abs(float(d.mean()))
    if obs == 0:
        return 1.0
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n, d.size))
    perm = np.abs((signs * d).mean(axis=1))
    return float((1 + np.sum(perm >= obs - 1e-12)) / (n + 1))


def coverage(recommended_lists: Iterable[Sequence[str]], n_items: int) -> float:
    """Share of the catalog's items that appear in at least one recommendation list."""
    if n_items <= 0:
        return math.nan
    return len({i for lst in recommended_lists for i in lst}) / n_items


def mean_popularity(recommended_lists: Iterable[Sequence[str]], item_popularity: Mapping[str, float]) -> float:
    """Mean popularity (e.g. training interaction count) over every recommended item."""
    vals = [item_popularity.get(i, 0.0) for lst in recommended_lists for i in lst]
    return float(np.mean(vals)) if vals else math.nan


# ----------------------------------------------------------------------------------------------
# Ranking primitives
# ----------------------------------------------------------------------------------------------
def _stable_u64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def tie_keys(item_ids: Sequence[str], seed: int = 0) -> np.ndarray:
    """The tie-breaking key of each item: a fixed 64-bit hash of (seed, item id)."""
    return np.array([_stable_u64(f"{seed}\x00{i}") for i in item_ids], dtype=np.uint64)


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


def _top_k(scores: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
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


def _natural_key(u: str):
    return (0, int(u), u) if u.isdigit() else (1, 0, u)


def sample_users(users: Iterable[str], n: int | None, seed: int) -> list[str]:
    """A seeded sample of n users (all if n is None or too big), in natural id order."""
    pool = sorted(set(users), key=_natural_key)
    if n is None or n >= len(pool):
        return pool
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(pool), size=n, replace=False)
    return [pool[i] for i in sorted(pick)]


def sample_negatives(user: str, seen: set[str], item_ids: Sequence[str], n: int, seed: int,
                     index: Mapping[str, int] | None = None) -> np.ndarray:
    """Indices (into item_ids) of n items the user never interacted with, drawn with (seed, user).

    Depends only on (seed, user, catalog): identical for every system and every user sample.
    """
    index = index if index is not None else {i: k for k, i in enumerate(item_ids)}
    mask = np.ones(len(item_ids), dtype=bool)
    mask[[index[i] for i in seen if i in index]] = False
    pool = np.flatnonzero(mask)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, _stable_u64(user) & 0xFFFFFFFF, 19])
    if pool.size <= n:
        return pool
    return np.sort(rng.choice(pool, size=n, replace=False))


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
class EvalReport(BaseModel):
    """What :func:`evaluate` measured. ``systems[name]`` holds the flat metrics dict that
    metrics.json carries; per-user ranks and top lists stay in memory (``ranks``, ``top``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dataset: str
    protocol: EvalProtocol
    phase: Literal["test", "valid"] = "test"
    n_users: int
    seed: int
    reference: str | None = None
    partial: bool = False
    users_done: int | None = None
    interrupted_system: str | None = None
    systems: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _users: list[str] = PrivateAttr(default_factory=list)
    _ranks: dict[str, np.ndarray] = PrivateAttr(default_factory=dict)
    _top: dict[str, list[list[str]]] = PrivateAttr(default_factory=dict)
    _extra_full: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)

    @property
    def users(self) -> list[str]:
        """Evaluated users, in evaluation order (a system's ranks follow this order)."""
        return self._users

    @property
    def ranks(self) -> dict[str, np.ndarray]:
        """Per system: the target's rank per evaluated user (inf = not ranked)."""
        return self._ranks

    @property
    def top(self) -> dict[str, list[list[str]]]:
        """Per system: the top-max(ks) item ids per evaluated user."""
        return self._top

    def metrics_json(self) -> dict[str, Any]:
        return _clean({
            "dataset": self.dataset,
            "protocol": self.protocol.model_dump(mode="json"),
            "phase": self.phase,
            "n_users": self.n_users,
            "seed": self.seed,
            "reference": self.reference,
            "partial": self.partial,
            "users_done": self.users_done,
            "interrupted_system": self.interrupted_system,
            "systems": self.systems,
        })


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


RANK_METRICS = ("hr", "ndcg", "recall")


def _per_user_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
        out[f"recall@{k}"] = recall_at_k(ranks, k)
    out["mrr"] = mrr(ranks)
    return out


def _summarise(report: EvalReport, catalog_items: int, popularity: Mapping[str, Mapping[str, float]],
               timings: dict[str, dict[str, float]]) -> None:
    proto = report.protocol
    names = list(report._ranks)
    if not names:
        return
    ref = "hybrid" if "hybrid" in names else names[0]
    report.reference = ref
    k0 = 10 if 10 in proto.ks else max(proto.ks)
    per_user = {n: _per_user_metrics(report._ranks[n], proto.ks) for n in names}
    for n in names:
        r = report._ranks[n]
        pu = per_user[n]
        m: dict[str, Any] = {k: float(v.mean()) if v.size else math.nan for k, v in pu.items()}
        idx = _boot_index(r.size, proto.bootstrap, proto.seed) if proto.bootstrap and r.size else None
        m["ci95"] = {k: list(bootstrap_ci(v, proto.bootstrap, proto.seed, _index=idx)) for k, v in pu.items()}
        if n != ref:
            common = min(r.size, report._ranks[ref].size)
            pidx = _boot_index(common, proto.bootstrap, proto.seed + 1) if proto.bootstrap and common else None
            m[f"p_vs_{ref}"] = {k: paired_bootstrap_p(pu[k][:common], per_user[ref][k][:common],
                                                      proto.bootstrap, proto.seed, _index=pidx)
                                for k in (f"ndcg@{k0}", f"hr@{k0}", "mrr")}
        base = n.split("+")[0]
        if "+" in n and base in report._ranks:
            # A variant (text+profile, hybrid+summaries, ...) is also tested against its own base.
            common = min(r.size, report._ranks[base].size)
            bidx = _boot_index(common, proto.bootstrap, proto.seed + 2) if proto.bootstrap and common else None
            m["base"] = base
            m["p_vs_base"] = {k: paired_bootstrap_p(pu[k][:common], per_user[base][k][:common],
                                                    proto.bootstrap, proto.seed, _index=bidx)
                              for k in (f"ndcg@{k0}", f"hr@{k0}", "mrr")}
        for k in proto.ks:
            lists = [t[:k] for t in report._top[n]]
            m[f"coverage@{k}"] = coverage(lists, catalog_items)
            m[f"mean_popularity@{k}"] = mean_popularity(lists, popularity.get(n, {}))
        ranked = r[np.isfinite(r)]
        m["median_rank"] = float(np.median(ranked)) if ranked.size else math.nan
        m["unranked"] = int(r.size - ranked.size)
        m.update(timings[n])
        m["n_users"] = int(r.size)
        extra = dict(report._extra_full.get(n, {}))
        if "position_pairs" in extra:
            extra["position_pairs"] = len(extra["position_pairs"])
        m["extra"] = extra
        report.systems[n] = m


# ----------------------------------------------------------------------------------------------
# Harness
# ----------------------------------------------------------------------------------------------
class _Prepared:
    """Per-user inputs shared by every system: history, target and candidates as indices."""

    def __init__(self, split: Split, users: list[str], protocol: EvalProtocol, phase: str):
        cat = split.catalog
        self.item_ids = list(cat.items)
        self.index = {i: k for k, i in enumerate(self.item_ids)}
        self.keys = tie_keys(self.item_ids, protocol.seed)
        self.users = users
        targets, hists = split.targets(phase), split.histories(phase)
        self.history = [hists[u] for u in users]
        self.target = np.array([self.index[targets[u]] for u in users], dtype=np.int64)
        self.exclude: list[np.ndarray] = []
        self.cands: list[np.ndarray] | None = [] if protocol.mode == "sampled" else None
        for u, t in zip(users, self.target):
            ex = np.array(sorted(self.index[i] for i in split.seen[u]), dtype=np.int64)
            self.exclude.append(ex[ex != t])
            if self.cands is not None:
                neg = sample_negatives(u, split.seen[u], self.item_ids, protocol.n_negatives,
                                       protocol.seed, self.index)
                self.cands.append(np.concatenate([[t], neg]).astype(np.int64))


def _system_map(system: Any, prep: _Prepared) -> tuple[bool, np.ndarray | None]:
    """Whether the fast path applies and, if the system's item order differs, the mapping."""
    if not callable(getattr(system, "score_array", None)) or getattr(system, "item_ids", None) is None:
        return False, None
    ids = list(system.item_ids)
    if ids == prep.item_ids:
        return True, None
    own = {i: k for k, i in enumerate(ids)}
    return True, np.array([own.get(i, -1) for i in prep.item_ids], dtype=np.int64)


def _scores_for(system: Any, fast: bool, perm: np.ndarray | None, prep: _Prepared, j: int,
                n_items: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(scores over the candidate positions, candidate item indices or None = all items)."""
    hist = prep.history[j]
    cands = prep.cands[j] if prep.cands is not None else None
    if fast:
        arr = np.asarray(system.score_array(hist), dtype=np.float64)
        if perm is None:
            if arr.shape != (n_items,):
                raise ValueError(f"{system.name}.score_array returned shape {arr.shape}, expected ({n_items},)")
            s = arr.copy()
        else:
            s = np.full(n_items, -np.inf)
            ok = perm >= 0
            s[ok] = arr[perm[ok]]
    else:
        ids = None if cands is None else [prep.item_ids[c] for c in cands]
        d = system.score(hist, ids)
        s = np.full(n_items, -np.inf)
        for i, v in d.items():
            k = prep.index.get(str(i))
            if k is not None and v is not None:
                s[k] = float(v)
    s[np.isnan(s)] = -np.inf
    if cands is None:
        s[prep.exclude[j]] = -np.inf
        return s, None
    return s[cands], cands


def evaluate(catalog: Catalog, systems: Sequence[Scorer], protocol: EvalProtocol, *,
             output_dir: Path | None = None, progress: bool = True, phase: str = "test",
             split: Split | None = None, command: str | None = None) -> EvalReport:
    """Fit and rank every system on the protocol's users; write the outputs if output_dir is set.

    Test phase: fit on ``split.train_val_catalog``, rank each user's test target given their
    test history. Valid phase: fit on ``split.train_catalog``, rank the validation target.
    Ctrl-C keeps what was finished: the report is marked partial (``users_done`` users of
    ``interrupted_system``; later systems are skipped) and outputs are still written.
    """
    phase = _phase(phase)
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ConfigError(f"system names must be unique, got {names}")
    split = split or leave_last_out(catalog)
    targets = split.targets(phase)
    eligible = [u for u in targets if split.n_interactions[u] >= protocol.min_history]
    n_sample = protocol.users if phase == "test" else (protocol.validation_users or protocol.users)
    users = sample_users(eligible, n_sample, protocol.seed)
    prep = _Prepared(split, users, protocol, phase)
    n_items = len(prep.item_ids)
    kmax = max(protocol.ks)
    report = EvalReport(dataset=catalog.name, protocol=protocol, phase=phase, n_users=len(users),
                        seed=protocol.seed)
    report._users = users
    fit_cat = split.fit_catalog(phase)
    counts: dict[str, float] = {}
    for x in fit_cat.interactions:
        counts[x.item] = counts.get(x.item, 0.0) + 1.0
    popularity: dict[str, Mapping[str, float]] = {}
    timings: dict[str, dict[str, float]] = {}

    bar = counting(progress, transient=False, unit="users") if progress else None
    if bar is not None:
        bar.start()
    try:
        for system in systems:
            ranks = np.full(len(users), np.inf)
            top: list[list[str]] = []
            done = 0
            t0 = time.perf_counter()
            t_fit = t0
            interrupted = False
            task = bar.add_task(f"{system.name} ({phase})", total=len(users)) if bar is not None else None
            try:
                system.fit(fit_cat)
                t_fit = time.perf_counter()
                fast, perm = _system_map(system, prep)
                for j in range(len(users)):
                    s, cands = _scores_for(system, fast, perm, prep, j, n_items)
                    if cands is None:
                        ranks[j] = rank_of_target(s, prep.keys, int(prep.target[j]))
                        best = _top_k(s, prep.keys, kmax)
                    else:
                        ck = prep.keys[cands]
                        ranks[j] = rank_of_target(s, ck, 0)
                        best = cands[_top_k(s, ck, kmax)]
                    top.append([prep.item_ids[b] for b in best])
                    done += 1
                    if task is not None:
                        bar.advance(task)
            except KeyboardInterrupt:
                interrupted = True
            t1 = time.perf_counter()
            if interrupted:
                report.partial = True
                report.users_done = done
                report.interrupted_system = system.name
            if done or not interrupted:
                report._ranks[system.name] = ranks[:done]
                report._top[system.name] = top
                report._extra_full[system.name] = dict(getattr(system, "extra", None) or {})
                popularity[system.name] = counts
                rank_s = max(t1 - t_fit, 1e-9)
                timings[system.name] = {"seconds": t1 - t0, "fit_seconds": t_fit - t0,
                                        "users_per_s": done / rank_s if done else 0.0}
            if interrupted:
                break
    finally:
        if bar is not None:
            bar.stop()
    _summarise(report, n_items, popularity, timings)
    if output_dir is not None:
        write_report(report, Path(output_dir), command if command is not None else shlex.join(sys.argv))
    return report


# ----------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------
def _versions() -> dict[str, str]:
    try:
        from importlib.metadata import version
        mr = version("mediarec")
    except Exception:  # not installed: read the checkout's pyproject
        mr = "unknown"
        pp = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            import tomllib
            mr = tomllib.loads(pp.read_text())["project"]["version"]
        except Exception:
            pass
    return {"python": platform.python_version(), "numpy": np.__version__, "mediarec": mr}


def _machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}


def _fmt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


def _report_md(data: dict[str, Any]) -> str:
    proto = data["protocol"]
    ks = proto["ks"]
    k0 = 10 if 10 in ks else max(ks)
    cols = [f"hr@{k0}", f"ndcg@{k0}", "mrr"] + [f"{m}@{k}" for k in ks if k != k0 for m in ("hr", "ndcg")]
    lines = [f"# Evaluation: {data['dataset']} ({proto['name']}, {data['phase']} phase)", ""]
    if data.get("partial"):
        lines += [f"**Partial run** (interrupted): {data['interrupted_system']} finished "
                  f"{data['users_done']} of {data['n_users']} users; later systems were not run.", ""]
    mode = proto["mode"] + (f", target + {proto['n_negatives']} sampled negatives" if proto["mode"] == "sampled"
                            else ", target among all unseen items")
    lines += [f"- split: {proto['split']}; ranking: {mode}",
              f"- users: {data['n_users']} (seed {data['seed']}); 95% percentile bootstrap CI over users "
              f"({proto['bootstrap']} resamples)",
              f"- reference for paired bootstrap p-values: {data.get('reference')}", "",
              "| system | " + " | ".join(c.upper() for c in cols)
              + f" | coverage@{k0} | mean pop@{k0} | p vs ref (NDCG@{k0}) | users | seconds | users/s |",
              "|---|" + "---|" * (len(cols) + 6)]
    for name, m in data["systems"].items():
        cells = []
        for c in cols:
            lo, hi = (m.get("ci95", {}).get(c) or [None, None])
            cells.append(f"{_fmt(m.get(c))} [{_fmt(lo)}, {_fmt(hi)}]")
        ref = data.get("reference")
        p = m.get(f"p_vs_{ref}", {}).get(f"ndcg@{k0}") if name != ref else None
        cells += [_fmt(m.get(f"coverage@{k0}")), f"{m.get(f'mean_popularity@{k0}') or 0:.1f}",
                  "ref" if name == ref else _fmt(p), str(m.get("n_users")),
                  f"{m.get('seconds', 0):.2f}", f"{m.get('users_per_s', 0):.1f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    variants = {n: m for n, m in data["systems"].items() if m.get("p_vs_base")}
    if variants:
        lines += ["", "## Variants against their base (paired bootstrap, same users)", "",
                  f"| variant | base | Δ HR@{k0} | p | Δ NDCG@{k0} | p | Δ MRR | p |", "|---|---|---|---|---|---|---|---|"]
        for n, m in variants.items():
            b = data["systems"][m["base"]]
            cells = []
            for c in (f"hr@{k0}", f"ndcg@{k0}", "mrr"):
                cells += [f"{m[c] - b[c]:+.4f}", _fmt(m["p_vs_base"].get(c))]
            lines.append(f"| {n} | {m['base']} | " + " | ".join(cells) + " |")
    extras = {n: m.get("extra") for n, m in data["systems"].items() if m.get("extra")}
    if extras:
        lines += ["", "## System extras", ""]
        for n, e in extras.items():
            lines.append(f"- **{n}**: " + ", ".join(f"{k}={v}" for k, v in e.items()))
    lines += ["", "![metrics](metrics.png)", "", "![target ranks](rank_hist.png)", ""]
    if data.get("_has_position_bias"):
        lines += ["![position bias](position_bias.png)", ""]
    lines += ["## Reproduce", "", "```", data["command"], "```", "",
              f"- date: {data['date']}",
              f"- machine: {data['machine']['platform']}, {data['machine']['cpu_count']} CPUs",
              "- versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()), ""]
    return "\n".join(lines)


def _save_fig(fig, path: Path) -> None:
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _plots(report: EvalReport, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    written = []
    names = list(report.systems)
    ks = report.protocol.ks
    k0 = 10 if 10 in ks else max(ks)
    # metrics.png: NDCG@k0 and HR@k0 with CI error bars
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 4))
    x = np.arange(len(names))
    w = 0.38
    for off, met in ((-w / 2, f"ndcg@{k0}"), (w / 2, f"hr@{k0}")):
        vals = np.array([report.systems[n].get(met, np.nan) for n in names], dtype=float)
        ci = np.array([report.systems[n].get("ci95", {}).get(met, [np.nan, np.nan]) for n in names], dtype=float)
        err = np.vstack([np.clip(vals - ci[:, 0], 0, None), np.clip(ci[:, 1] - vals, 0, None)])
        err = np.nan_to_num(err)
        ax.bar(x + off, np.nan_to_num(vals), w, yerr=err, capsize=4, label=met.upper())
    ax.set_xticks(x, names, rotation=20 if len(names) > 4 else 0)
    ax.set_ylabel("mean over users (95% CI)")
    ax.set_title(f"{report.dataset} — {report.protocol.name} ({report.phase}), {report.n_users} users")
    ax.legend()
    _save_fig(fig, out / "metrics.png")
    plt.close(fig)
    written.append(out / "metrics.png")
    # rank_hist.png: target ranks, log x
    fig, ax = plt.subplots(figsize=(7, 4))
    finite_all = [r[np.isfinite(r)] for r in report.ranks.values()]
    mx = max([float(r.max()) for r in finite_all if r.size] + [2.0])
    bins = np.unique(np.round(np.logspace(0, math.log10(mx + 1), 30)))
    for n in names:
        r = report.ranks.get(n, np.array([]))
        r = r[np.isfinite(r)]
        if r.size:
            ax.hist(r, bins=bins, histtype="step", linewidth=1.6, label=f"{n} ({r.size} ranked)")
    ax.set_xscale("log")
    ax.set_xlabel("rank of the held-out target (1 = top)")
    ax.set_ylabel("users")
    ax.set_title("Target rank distribution")
    ax.legend(fontsize=8)
    _save_fig(fig, out / "rank_hist.png")
    plt.close(fig)
    written.append(out / "rank_hist.png")
    # position_bias.png: LLM rank vs position in the prompt
    pairs = {n: np.asarray(e["position_pairs"], dtype=float).reshape(-1, 2)
             for n, e in report._extra_full.items() if e.get("position_pairs")}
    if pairs:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for n, pp in pairs.items():
            pos = pp[:, 0].astype(int)
            uniq = np.unique(pos)
            means = [pp[pos == p, 1].mean() for p in uniq]
            ax.plot(uniq, means, marker="o", label=f"{n} (mean LLM rank)")
        lim = max(float(pp.max()) for pp in pairs.values())
        ax.plot([0, lim], [0, lim], "k--", linewidth=0.8, label="rank = prompt position")
        ax.set_xlabel("position of the candidate in the prompt")
        ax.set_ylabel("rank given by the LLM")
        ax.set_title("Position bias")
        ax.legend(fontsize=8)
        _save_fig(fig, out / "position_bias.png")
        plt.close(fig)
        written.append(out / "position_bias.png")
    return written


def write_report(report: EvalReport, output_dir: Path, command: str) -> dict[str, Path]:
    """metrics.json, report.md, metrics.png, rank_hist.png (and position_bias.png), atomically."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = report.metrics_json()
    data["command"] = command
    data["versions"] = _versions()
    data["machine"] = _machine()
    data["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    paths = {"metrics.json": out / "metrics.json", "report.md": out / "report.md"}
    pairs = {n: e["position_pairs"] for n, e in report._extra_full.items() if e.get("position_pairs")}
    if pairs:
        atomic_write_text(out / "position_pairs.json", json.dumps(_clean(pairs)) + "\n")
        paths["position_pairs.json"] = out / "position_pairs.json"
    atomic_write_text(paths["metrics.json"], json.dumps(data, indent=2) + "\n")
    md = _report_md({**data, "_has_position_bias": bool(pairs)})
    atomic_write_text(paths["report.md"], md)
    if report.systems:
        for p in _plots(report, out):
            paths[p.name] = p
    return paths
