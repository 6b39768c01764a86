"""The harness: every system fitted on the same training log and ranked on the same users.

:func:`evaluate` fits each system on the split's training catalog, ranks each sampled user's
held-out target against the protocol's candidates (see :mod:`mediarec.eval.split`), and
summarises per-user metrics (:mod:`mediarec.eval.metrics`) with bootstrap intervals and paired
tests against a reference system (:mod:`mediarec.eval.stats`) into an :class:`EvalReport`.
Writing the report's files is :mod:`mediarec.eval.report`'s job.
"""

from __future__ import annotations

import math
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from mediarec.catalog.model import Catalog, Interaction
from mediarec.errors import ConfigError
from mediarec.eval.metrics import coverage, hit_at_k, mean_popularity, mrr, ndcg_at_k, rank_of_target, tie_keys, top_k
from mediarec.eval.protocol import EvalProtocol
from mediarec.eval.report import json_safe, write_report
from mediarec.infra.threads import single_threaded_blas
from mediarec.eval.split import Split, checked_phase, sample_negatives, sample_users, split_for
from mediarec.eval.stats import bootstrap_ci, bootstrap_index, paired_bootstrap_p
from mediarec.infra.progress import counting

__all__ = ["Scorer", "ArrayScorer", "EvalReport", "evaluate", "REPEAT_WARNING"]

#: eval warns when more than this share of the targets are repeats (items consumed before).
REPEAT_WARNING = 0.10


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
    """The fast path for **full** ranking: a dense score vector over ``item_ids``.

    Sampled mode always calls ``score(history, candidates)``: a system that reranks a pool must
    see the sampled candidates, not its own global top.
    """

    item_ids: list[str]

    def score_array(self, history: list[Interaction]) -> np.ndarray: ...


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
    # Issue 28: what was evaluated ("new": targets not consumed before; "all": repeats too) and how
    # many of the eligible users' targets are repeats (targets, repeats, share, warning).
    targets: Literal["new", "all"] = "new"
    repeats: dict[str, Any] = Field(default_factory=dict)
    systems: dict[str, dict[str, Any]] = Field(default_factory=dict)

    _users: list[str] = PrivateAttr(default_factory=list)
    _ranks: dict[str, np.ndarray] = PrivateAttr(default_factory=dict)
    _top: dict[str, list[list[str]]] = PrivateAttr(default_factory=dict)
    _extra_full: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _repeat_flags: np.ndarray | None = PrivateAttr(default=None)

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
        return json_safe({
            "dataset": self.dataset,
            "protocol": self.protocol.model_dump(mode="json"),
            "phase": self.phase,
            "n_users": self.n_users,
            "seed": self.seed,
            "reference": self.reference,
            "partial": self.partial,
            "users_done": self.users_done,
            "interrupted_system": self.interrupted_system,
            "targets": self.targets,
            "repeats": self.repeats,
            "systems": self.systems,
        })


def _per_user_metrics(ranks: np.ndarray, ks: Sequence[int]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
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
        idx = bootstrap_index(r.size, proto.bootstrap, proto.seed) if proto.bootstrap and r.size else None
        m["ci95"] = {k: list(bootstrap_ci(v, proto.bootstrap, proto.seed, index=idx)) for k, v in pu.items()}
        if n != ref:
            common = min(r.size, report._ranks[ref].size)
            pidx = bootstrap_index(common, proto.bootstrap, proto.seed + 1) if proto.bootstrap and common else None
            m[f"p_vs_{ref}"] = {k: paired_bootstrap_p(pu[k][:common], per_user[ref][k][:common],
                                                      proto.bootstrap, proto.seed, index=pidx)
                                for k in (f"ndcg@{k0}", f"hr@{k0}", "mrr")}
        base = re.split(r"[+-]", n)[0]
        if base != n and base in report._ranks:
            # A variant (text+profile, hybrid+summaries, learned+llm, the ablation learned-text, ...)
            # is also tested against its own base.
            common = min(r.size, report._ranks[base].size)
            bidx = bootstrap_index(common, proto.bootstrap, proto.seed + 2) if proto.bootstrap and common else None
            m["base"] = base
            m["p_vs_base"] = {k: paired_bootstrap_p(pu[k][:common], per_user[base][k][:common],
                                                    proto.bootstrap, proto.seed, index=bidx)
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
        if report.targets == "all" and report._repeat_flags is not None:
            # The same ranks split by what the target was: a replay, or an item new to the user.
            flags = report._repeat_flags[: r.size]
            m["by_target"] = {kind: {"users": int(sel.sum()), **{key: float(pu[key][sel].mean()) if sel.any()
                                                                  else math.nan for key in (f"hr@{k0}", f"ndcg@{k0}")}}
                              for kind, sel in (("repeat", flags), ("new", ~flags))}
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
        for u, t, h in zip(users, self.target, self.history):
            # new targets: every item the user interacted with is out (but the target); all targets
            # (repeats allowed): only what they disliked or rated low, as the product's include-seen.
            out = split.seen[u] if protocol.targets == "new" else \
                {i for i, _ in cat.history_negatives(h, weak=1.0)}
            ex = np.array(sorted(self.index[i] for i in out), dtype=np.int64)
            self.exclude.append(ex[ex != t])
            if self.cands is not None:
                neg = sample_negatives(u, split.seen[u], self.item_ids, protocol.n_negatives,
                                       protocol.seed, self.index)
                self.cands.append(np.concatenate([[t], neg]).astype(np.int64))


def _fast_path(system: Any, prep: _Prepared) -> tuple[bool, np.ndarray | None]:
    """Whether ``score_array`` is used (full mode only) and, if the system's item order differs
    from the catalog's, the mapping from catalog positions to the system's positions."""
    if prep.cands is not None:
        return False, None  # sampled: the system must see the sampled candidates
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
    phase = checked_phase(phase)
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ConfigError(f"system names must be unique, got {names}")
    split = split or split_for(catalog, protocol)  # the protocol decides the filter and the tie rule
    targets = split.targets(phase)
    eligible = [u for u in targets if split.n_interactions[u] >= protocol.min_history]
    is_repeat = split.repeats(phase)
    n_repeat = sum(is_repeat[u] for u in eligible)
    repeats = {"targets": len(eligible), "repeats": n_repeat, "share": n_repeat / len(eligible) if eligible else 0.0}
    if repeats["share"] > REPEAT_WARNING:
        repeats["warning"] = (f"{n_repeat} of {len(eligible)} {phase} targets ({repeats['share']:.0%}) are items the "
                              "user consumed before (repeats): " + (
                                  "they are left out here (targets new), and the product does not recommend them "
                                  "unless include-seen is on; --targets all evaluates them too"
                                  if protocol.targets == "new" else "they are evaluated here (targets all)"))
    if protocol.targets == "new":
        eligible = [u for u in eligible if not is_repeat[u]]
    n_sample = protocol.users if phase == "test" else (protocol.validation_users or protocol.users)
    users = sample_users(eligible, n_sample, protocol.seed)
    prep = _Prepared(split, users, protocol, phase)
    n_items = len(prep.item_ids)
    kmax = max(protocol.ks)
    report = EvalReport(dataset=catalog.name, protocol=protocol, phase=phase, n_users=len(users),
                        seed=protocol.seed, targets=protocol.targets, repeats=repeats)
    report._users = users
    report._repeat_flags = np.array([is_repeat[u] for u in users], dtype=bool)
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
                fast, perm = _fast_path(system, prep)
                with single_threaded_blas():  # many small products: see infra/threads.py
                    for j in range(len(users)):
                        s, cands = _scores_for(system, fast, perm, prep, j, n_items)
                        if cands is None:
                            ranks[j] = rank_of_target(s, prep.keys, int(prep.target[j]))
                            best = top_k(s, prep.keys, kmax)
                        else:
                            ck = prep.keys[cands]
                            ranks[j] = rank_of_target(s, ck, 0)
                            best = cands[top_k(s, ck, kmax)]
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
