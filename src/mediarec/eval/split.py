"""Which interactions a system learns from and which it must predict, and against what.

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

Catalog preparation (:func:`protocol_catalog`, before the split)
    A protocol may first apply an iterative ``core``-core filter (LlamaRec's ``filter_triplets``:
    per round drop items with fewer than ``core`` interactions, then users with fewer, until both
    hold) and the ``dense-id`` tie rule: items get LlamaRec's dense ids (the iteration order of a
    CPython ``set`` of the remaining item ids, built in log order) and the log is reordered by
    ``(timestamp, dense id)``, so the split's ``(timestamp, position)`` order *is* LlamaRec's
    ``(timestamp, dense id)``. Items without interactions after the filter leave the catalog:
    full ranking is over the remaining items, as in LlamaRec. LlamaRec's first step, "keep items
    with metadata", holds by construction: a catalog rejects interactions with unknown items and
    every item has a title. :func:`split_for` does both steps.

Repeats
    A target is a *repeat* when the user's history before it already holds the item (any
    interaction: a replay of an album, a second watch). :meth:`Split.repeats` says which; the
    protocol's ``targets`` decides what is evaluated: ``new`` (the default) only users whose target
    is not a repeat, ``all`` every user with repeats allowed as candidates.

Candidates
    ``full`` mode ranks the target among every catalog item the user has *not* interacted with
    (anywhere in their log) plus the target itself: known positives other than the target are
    never counted as negatives. ``sampled`` mode (the LLMRank protocol) ranks the target among
    ``n_negatives`` items drawn uniformly from those same unseen items (:func:`sample_negatives`).
    Negatives depend only on ``(seed, user)``, so every system sees exactly the same candidates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from mediarec.catalog.model import Catalog, Interaction
from mediarec.errors import CatalogError, ConfigError
from mediarec.eval.metrics import stable_u64

if TYPE_CHECKING:
    from mediarec.eval.protocol import EvalProtocol

__all__ = ["Split", "checked_phase", "leave_last_out", "sample_users", "sample_negatives", "k_core",
           "dense_item_ids", "protocol_catalog", "split_for"]


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
        return self.test if checked_phase(phase) == "test" else self.valid

    def histories(self, phase: str = "test") -> dict[str, list[Interaction]]:
        return self.test_history if checked_phase(phase) == "test" else self.valid_history

    def fit_catalog(self, phase: str = "test") -> Catalog:
        return self.train_val_catalog if checked_phase(phase) == "test" else self.train_catalog

    def repeats(self, phase: str = "test") -> dict[str, bool]:
        """Per user with a target in ``phase``: whether their history before it holds the item."""
        targets, hists = self.targets(phase), self.histories(phase)
        return {u: any(x.item == t for x in hists[u]) for u, t in targets.items()}


def checked_phase(phase: str) -> str:
    """``phase`` itself if it is "test" or "valid"; a one-line error otherwise."""
    if phase not in ("test", "valid"):
        raise ConfigError(f"unknown evaluation phase {phase!r} (use 'test' or 'valid')")
    return phase


def _training_catalog(catalog: Catalog, interactions: list[Interaction]) -> Catalog:
    """The same items with a reduced interaction log (the one place a split derives a catalog)."""
    return catalog.replace(interactions=interactions)


_LAST_SPLIT: list = []  # [(catalog, its split)]: the latest only (index's auto-tune asks three times)


def leave_last_out(catalog: Catalog) -> Split:
    """Hold out each user's last interaction (test) and the one before it (validation). The same
    catalog object asked again gets the same split (a catalog is immutable)."""
    if _LAST_SPLIT and _LAST_SPLIT[0][0] is catalog:
        return _LAST_SPLIT[0][1]
    split = _leave_last_out(catalog)
    _LAST_SPLIT[:] = [(catalog, split)]
    return split


def _leave_last_out(catalog: Catalog) -> Split:
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
    return Split(catalog=catalog, train_catalog=_training_catalog(catalog, train),
                 train_val_catalog=_training_catalog(catalog, train_val), test=test, valid=valid,
                 test_history=test_hist, valid_history=valid_hist, seen=seen, n_interactions=n_inter)


def k_core(interactions: Sequence[Interaction], k: int) -> tuple[list[Interaction], int]:
    """LlamaRec's iterative k-core filter; returns (kept interactions in log order, rounds run).

    Each round drops items with fewer than k interactions, then users with fewer than k (in that
    order, as ``filter_triplets`` does), until every remaining user and item has at least k.
    """
    kept = list(interactions)
    rounds = 0
    while True:
        items = Counter(x.item for x in kept)
        users = Counter(x.user for x in kept)
        if all(n >= k for n in items.values()) and all(n >= k for n in users.values()):
            return kept, rounds
        rounds += 1
        kept = [x for x in kept if items[x.item] >= k]
        users = Counter(x.user for x in kept)
        kept = [x for x in kept if users[x.user] >= k]


def _canonical_int(s: str) -> int | None:
    """The int a string id spells exactly ("42" -> 42; "042", "-0", "x" -> None)."""
    return int(s) if s.isascii() and s.isdigit() and str(int(s)) == s else None


def dense_item_ids(interactions: Sequence[Interaction]) -> dict[str, int]:
    """LlamaRec's dense item ids, from 1: ``{s: i for i, s in enumerate(set(df['sid']), start=1)}``.

    When every id is an integer, this is the iteration order of a CPython ``set`` of those ints
    added in log order (deterministic: an int hashes to itself). Other ids have no such order
    (string hashes are salted per process), so they are numbered by first appearance in the log.
    """
    ids = [x.item for x in interactions]
    as_int = {i: _canonical_int(i) for i in dict.fromkeys(ids)}
    if all(v is not None for v in as_int.values()):
        to_str = {v: i for i, v in as_int.items()}
        order = [to_str[v] for v in set(as_int[i] for i in ids)]
    else:
        order = list(as_int)
    return {i: n for n, i in enumerate(order, start=1)}


def protocol_catalog(catalog: Catalog, protocol: "EvalProtocol") -> Catalog:
    """The catalog a protocol evaluates on: ``catalog`` itself, or its core-filtered, dense-id
    ordered version (see the module docstring); a filter that leaves nothing is an error."""
    if protocol.core <= 1 and protocol.ties == "log-order":
        return catalog
    log = list(catalog.interactions)
    rounds = 0
    if protocol.core > 1:
        log, rounds = k_core(log, protocol.core)
        if not log:
            raise CatalogError(f"protocol {protocol.name!r}: the {protocol.core}-core filter leaves no "
                               f"interactions ({len(catalog.interactions)} before); it needs users and items "
                               f"with at least {protocol.core} interactions each", catalog.source)
    if protocol.ties == "dense-id":
        dense = dense_item_ids(log)
        log.sort(key=lambda x: (x.timestamp, dense[x.item]))  # stable: equal keys keep log order
    remaining = {x.item for x in log}
    stats = {**catalog.load_stats, "protocol_filter": {
        "core": protocol.core, "ties": protocol.ties, "rounds": rounds,
        "before": _counts(catalog.interactions, len(catalog.items)),
        "after": _counts(log, len(remaining))}}
    return catalog.replace(items=[it for i, it in catalog.items.items() if i in remaining],
                           interactions=log, load_stats=stats)


def _counts(log: Sequence[Interaction], n_items: int) -> dict[str, int]:
    return {"users": len({x.user for x in log}), "items": n_items, "interactions": len(log)}


def split_for(catalog: Catalog, protocol: "EvalProtocol") -> Split:
    """The protocol's split: :func:`protocol_catalog`, then :func:`leave_last_out`."""
    return leave_last_out(protocol_catalog(catalog, protocol))


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
    rng = np.random.default_rng([seed & 0xFFFFFFFF, stable_u64(user) & 0xFFFFFFFF, 19])
    if pool.size <= n:
        return pool
    return np.sort(rng.choice(pool, size=n, replace=False))
