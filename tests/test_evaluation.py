"""Evaluation: metrics, the leave-last-out split, candidates, tie-breaking, the harness and its outputs."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from mediarec.eval.baselines import ItemKNNScorer, PopularityScorer
from mediarec.catalog.model import Catalog, Interaction, Item
from mediarec.errors import ConfigError
from mediarec.eval import (ArrayScorer, EvalProtocol, Scorer, bootstrap_ci, builtin_protocols, coverage, evaluate,
                           hit_at_k, leave_last_out, mean_popularity, mrr, ndcg_at_k, paired_bootstrap_p,
                           rank_of_target, sample_negatives, sample_users, tie_keys, write_report)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def _load_ml100k(folder: Path) -> Catalog:
    try:
        from mediarec.catalog import load_movielens_100k
    except ImportError:  # fallback: parse u.item / u.data directly
        items = [Item(id=p[0], title=p[1]) for p in
                 (line.split("|") for line in (folder / "u.item").read_text(encoding="latin-1").splitlines() if line)]
        inter = [Interaction(user=u, item=i, rating=float(r), timestamp=float(t), event="rating")
                 for u, i, r, t in (line.split("\t") for line in (folder / "u.data").read_text().splitlines() if line)]
        return Catalog("ml-100k", items, inter)
    return load_movielens_100k(folder)


@pytest.fixture(scope="module")
def ml100k(shared_data) -> Catalog:
    return _load_ml100k(shared_data / "ml-100k")


@pytest.fixture(scope="module")
def ml100k_split(ml100k):
    return leave_last_out(ml100k)


def _toy_catalog() -> Catalog:
    items = [Item(id=f"i{k}", title=f"Item {k}") for k in range(12)]
    x = Interaction
    log = [
        # user a: timestamps 5, 1, 5, 3 -> order i2(1), i4(3), i1(5), i3(5: later in the file)
        x(user="a", item="i1", timestamp=5), x(user="a", item="i2", timestamp=1),
        x(user="b", item="i5", timestamp=9),                      # b: one interaction
        x(user="a", item="i3", timestamp=5), x(user="a", item="i4", timestamp=3),
        x(user="c", item="i6", timestamp=2), x(user="c", item="i7", timestamp=2),  # c: two, tied
    ]
    return Catalog("toy", items, log)


class RecordingScorer:
    """A slow-path system (no score_array) that records the candidates it was asked about."""

    def __init__(self, name: str, seed: int = 0):
        self.name = name
        self.seed = seed
        self.calls: list[tuple[tuple[str, ...], list[str] | None]] = []

    def fit(self, train: Catalog) -> None:
        self.items = list(train.items)

    def score(self, history, candidates=None):
        self.calls.append((tuple(h.item for h in history), None if candidates is None else list(candidates)))
        rng = np.random.default_rng(self.seed + len(self.calls))
        ids = candidates if candidates is not None else self.items
        return {i: float(v) for i, v in zip(ids, rng.random(len(ids)))}


class SlowWrapper:
    """Only score(), delegating to a fitted baseline; optionally scores a subset of items."""

    def __init__(self, inner, name: str, drop: set[str] = frozenset()):
        self.inner, self.name, self.drop = inner, name, drop

    def fit(self, train):
        self.inner.fit(train)

    def score(self, history, candidates=None):
        d = self.inner.score(history, candidates)
        return {k: v for k, v in d.items() if k not in self.drop}


class ReversedArray:
    """score_array over a reversed item order: the harness must map it back."""

    def __init__(self, inner, name: str):
        self.inner, self.name = inner, name

    def fit(self, train):
        self.inner.fit(train)
        self.item_ids = list(reversed(self.inner.item_ids))

    def score(self, history, candidates=None):  # pragma: no cover - fast path used
        return self.inner.score(history, candidates)

    def score_array(self, history):
        return self.inner.score_array(history)[::-1]


# ----------------------------------------------------------------------------------------------
# metrics
# ----------------------------------------------------------------------------------------------
def test_metrics_hand_computed():
    ranks = [1, 3, 11, None]
    assert hit_at_k(ranks, 10).mean() == pytest.approx(0.5)
    assert hit_at_k(ranks, 10).tolist() == [1, 1, 0, 0]
    assert hit_at_k(ranks, 1).mean() == pytest.approx(0.25)
    assert hit_at_k(ranks, 20).mean() == pytest.approx(0.75)
    assert ndcg_at_k(ranks, 10).mean() == pytest.approx((1 + 1 / math.log2(4) + 0 + 0) / 4)
    assert ndcg_at_k(ranks, 10).mean() == pytest.approx(0.375)
    assert ndcg_at_k(ranks, 20).mean() == pytest.approx((1 + 0.5 + 1 / math.log2(12)) / 4)
    assert ndcg_at_k(ranks, 2).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert mrr(ranks).mean() == pytest.approx((1 + 1 / 3 + 1 / 11 + 0) / 4)
    # numpy input, inf and NaN both mean "not ranked"
    arr = np.array([2.0, np.inf, np.nan])
    assert ndcg_at_k(arr, 10).tolist() == pytest.approx([1 / math.log2(3), 0, 0])
    assert mrr(arr).tolist() == pytest.approx([0.5, 0, 0])
    with pytest.raises(ValueError):
        hit_at_k([0, 1], 10)


def test_bootstrap_and_paired_tests():
    const = np.full(50, 0.3)
    assert bootstrap_ci(const, n=200, seed=1) == pytest.approx((0.3, 0.3))
    v = np.random.default_rng(0).random(300)
    lo, hi = bootstrap_ci(v, n=500, seed=3)
    assert lo < v.mean() < hi and hi - lo < 0.2
    assert bootstrap_ci(v, n=500, seed=3) == (lo, hi)  # seeded
    assert paired_bootstrap_p(v, v) == 1.0
    better = v + 0.2
    assert paired_bootstrap_p(better, v, n=500) < 0.01
    a = np.random.default_rng(5).random(200)
    b = np.random.default_rng(6).random(200)  # no real difference
    assert paired_bootstrap_p(a, b, n=500) > 0.05
    assert math.isnan(paired_bootstrap_p([], []))


def test_coverage_and_popularity():
    lists = [["a", "b"], ["b", "c"], []]
    assert coverage(lists, 10) == pytest.approx(0.3)
    pop = {"a": 10, "b": 4, "c": 1}
    assert mean_popularity(lists, pop) == pytest.approx((10 + 4 + 4 + 1) / 4)
    assert math.isnan(mean_popularity([[]], pop))


# ----------------------------------------------------------------------------------------------
# protocol
# ----------------------------------------------------------------------------------------------
def test_protocol_files_load(tmp_path, monkeypatch):
    names = builtin_protocols()
    assert {"ml-100k-full", "ml-100k-sampled", "ml-latest-small-full", "lastfm-2k-full", "ml-1m-lrurec"} <= set(names)
    assert EvalProtocol.load("lrurec").name == "ml-1m-lrurec"  # the alias
    monkeypatch.chdir(tmp_path)  # built-in names are package data, found from any folder
    for n in names:
        p = EvalProtocol.load(n)
        assert p.name == n and p.split == "leave-last-out"
    s = EvalProtocol.load("ml-100k-sampled")  # by name
    assert (s.mode, s.n_negatives, s.users, s.seed) == ("sampled", 19, 200, 0)
    f = EvalProtocol.load("ml-100k-full")
    assert (f.mode, f.users, f.ks, f.bootstrap, f.min_history) == ("full", None, (5, 10, 20), 1000, 1)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"mode": "everything"}))
    with pytest.raises(ConfigError, match="mode"):
        EvalProtocol.load(bad)
    bad.write_text(json.dumps({"negatives": 5}))  # a typo is an error, not ignored
    with pytest.raises(ConfigError, match="negatives"):
        EvalProtocol.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        EvalProtocol.load(bad)
    with pytest.raises(ConfigError, match="missing.json: no such protocol file"):
        EvalProtocol.load(tmp_path / "missing.json")
    with pytest.raises(ConfigError, match="ml-100k-sampled"):  # an unknown name lists the built-in ones
        EvalProtocol.load("ml-100k-sampeld")
    out = tmp_path / "p.json"
    out.write_text(json.dumps(s.model_dump(mode="json")))
    assert EvalProtocol.load(out) == s


# ----------------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------------
def test_leave_last_out_toy():
    cat = _toy_catalog()
    sp = leave_last_out(cat)
    assert sp.test == {"a": "i3", "b": "i5", "c": "i7"}
    assert sp.valid == {"a": "i1", "c": "i6"}  # b has one interaction: no validation target
    assert [x.item for x in sp.test_history["a"]] == ["i2", "i4", "i1"]
    assert [x.item for x in sp.valid_history["a"]] == ["i2", "i4"]
    assert sp.test_history["b"] == [] and "b" not in sp.valid_history
    assert [x.item for x in sp.test_history["c"]] == ["i6"] and sp.valid_history["c"] == []
    assert sorted((x.user, x.item) for x in sp.train_val_catalog.interactions) == [
        ("a", "i1"), ("a", "i2"), ("a", "i4"), ("c", "i6")]
    assert sorted((x.user, x.item) for x in sp.train_catalog.interactions) == [("a", "i2"), ("a", "i4")]
    # the training catalogs keep the items and agree with the histories
    assert len(sp.train_catalog) == len(cat) == 12
    assert [x.item for x in sp.train_val_catalog.by_user["a"]] == ["i2", "i4", "i1"]
    assert sp.seen["a"] == {"i1", "i2", "i3", "i4"}
    assert sp.fit_catalog("valid") is sp.train_catalog and sp.targets("valid") is sp.valid
    with pytest.raises(ConfigError):
        sp.targets("train")


def test_one_interaction_user_is_evaluated_with_empty_history():
    cat = _toy_catalog()
    rec = RecordingScorer("rec")
    rep = evaluate(cat, [rec], EvalProtocol(bootstrap=50), progress=False)
    assert rep.users == ["a", "b", "c"] and rep.n_users == 3
    histories = [h for h, _ in rec.calls]
    assert () in histories  # b got an empty history
    assert rep.ranks["rec"].shape == (3,) and np.all(np.isfinite(rep.ranks["rec"]))
    # valid phase: only a and c have a validation target
    rep_v = evaluate(cat, [RecordingScorer("rec")], EvalProtocol(bootstrap=0), progress=False, phase="valid")
    assert rep_v.users == ["a", "c"]


# ----------------------------------------------------------------------------------------------
# candidates and ties
# ----------------------------------------------------------------------------------------------
def test_tie_breaking_is_by_item_hash():
    ids = [f"i{k}" for k in range(50)]
    keys = tie_keys(ids, seed=0)
    assert keys.dtype == np.uint64 and len(set(keys.tolist())) == 50
    assert np.array_equal(keys, tie_keys(ids, seed=0))  # deterministic
    flat = np.zeros(50)
    ranks = [rank_of_target(flat, keys, t) for t in range(50)]
    # all tied: the ranks are a permutation of 1..50 given by the hash, neither all 1 nor all 50
    assert sorted(ranks) == list(range(1, 51))
    for t in range(50):
        assert ranks[t] == 1 + int(np.sum(keys > keys[t]))
    # strictly higher scores always count; strictly lower never
    s = np.zeros(50)
    s[:5] = 1.0
    s[45:] = -1.0
    assert rank_of_target(s, keys, 10) == 1 + 5 + int(np.sum(keys[5:45] > keys[10]))
    # an unscored target is not ranked
    s[10] = -np.inf
    assert rank_of_target(s, keys, 10) == math.inf
    s[10] = np.nan
    assert rank_of_target(s, keys, 10) == math.inf


def test_constant_scorer_ranks_are_spread_not_pessimistic(ml100k_split):
    class Flat(PopularityScorer):
        def fit(self, train):
            super().fit(train)
            self.counts[:] = 0.0

    rep = evaluate(ml100k_split.catalog, [Flat(name="flat")], EvalProtocol(users=200, bootstrap=0),
                   progress=False, split=ml100k_split)
    r = rep.ranks["flat"]
    n_items = len(ml100k_split.catalog)
    assert np.all(np.isfinite(r))
    # with hash tie-breaking a constant system lands in the middle on average (~n/2)
    assert 0.3 * n_items < r.mean() < 0.7 * n_items
    assert r.min() < 100 and r.max() > n_items - 500


def test_sampled_negatives_identical_across_systems_and_exclude_history(ml100k_split):
    proto = EvalProtocol(mode="sampled", users=40, seed=7, bootstrap=0)
    a, b = RecordingScorer("a", seed=1), RecordingScorer("b", seed=99)
    rep = evaluate(ml100k_split.catalog, [a, b], proto, progress=False, split=ml100k_split)
    assert len(a.calls) == len(b.calls) == 40
    assert [c for _, c in a.calls] == [c for _, c in b.calls]  # same candidates, same order
    for user, (hist, cands) in zip(rep.users, a.calls):
        target = ml100k_split.test[user]
        assert cands[0] == target and len(cands) == 20 and len(set(cands)) == 20
        negatives = set(cands[1:])
        assert not negatives & set(hist)
        assert not negatives & ml100k_split.seen[user]  # never an item the user interacted with
        assert hist == tuple(x.item for x in ml100k_split.test_history[user])
    # negatives depend on (seed, user) only, not on which other users were sampled
    u = rep.users[0]
    item_ids = list(ml100k_split.catalog.items)
    neg = sample_negatives(u, ml100k_split.seen[u], item_ids, 19, seed=7)
    assert [item_ids[k] for k in neg] == a.calls[0][1][1:]
    assert not np.array_equal(neg, sample_negatives(u, ml100k_split.seen[u], item_ids, 19, seed=8))
    # the ranks are within 1..20
    for n in ("a", "b"):
        assert rep.ranks[n].min() >= 1 and rep.ranks[n].max() <= 20


def test_user_sample_is_seeded():
    users = [str(k) for k in range(1, 101)]
    s1 = sample_users(users, 10, seed=0)
    assert s1 == sample_users(reversed(users), 10, seed=0) and len(s1) == 10
    assert s1 != sample_users(users, 10, seed=1)
    assert sample_users(users, None, 0)[:3] == ["1", "2", "3"]  # natural order


def test_fast_and_slow_paths_agree(ml100k_split):
    proto = EvalProtocol(users=60, bootstrap=0)
    cat = ml100k_split.catalog
    knn = ItemKNNScorer(k=50)
    assert isinstance(knn, ArrayScorer) and isinstance(knn, Scorer)
    systems = [knn, SlowWrapper(ItemKNNScorer(k=50), "slow"), ReversedArray(ItemKNNScorer(k=50), "reversed")]
    rep = evaluate(cat, systems, proto, progress=False, split=ml100k_split)
    assert np.array_equal(rep.ranks["itemknn"], rep.ranks["slow"])
    assert np.array_equal(rep.ranks["itemknn"], rep.ranks["reversed"])
    assert rep.top["itemknn"] == rep.top["slow"] == rep.top["reversed"]
    # the top lists never contain an item from the user's history, and are sorted by score
    for u, top in zip(rep.users, rep.top["itemknn"]):
        assert len(top) == 20 and not set(top) & {x.item for x in ml100k_split.test_history[u]}
    # an item a system does not return is unranked: dropping the targets makes every rank inf
    targets = {ml100k_split.test[u] for u in rep.users}
    rep2 = evaluate(cat, [SlowWrapper(PopularityScorer(), "partial", drop=targets)], proto,
                    progress=False, split=ml100k_split)
    assert np.all(np.isinf(rep2.ranks["partial"]))
    assert rep2.systems["partial"]["hr@10"] == 0 and rep2.systems["partial"]["unranked"] == 60


def test_sampled_mode_calls_score_with_the_sampled_candidates(ml100k_split):
    """In sampled mode the harness never takes the score_array fast path: a system that reranks
    a pool must see the sampled candidates. For baselines the ranks equal the fast path's."""

    class Recording(ItemKNNScorer):
        def __init__(self):
            super().__init__(name="itemknn", k=50)
            self.asked: list[list[str] | None] = []

        def score(self, history, candidates=None):
            self.asked.append(None if candidates is None else list(candidates))
            return super().score(history, candidates)

    proto = EvalProtocol(mode="sampled", users=30, seed=4, bootstrap=0)
    knn, pop = Recording(), PopularityScorer()
    rep = evaluate(ml100k_split.catalog, [knn, pop], proto, progress=False, split=ml100k_split)
    assert len(knn.asked) == 30 and all(c is not None and len(c) == 20 for c in knn.asked)
    item_ids = list(ml100k_split.catalog.items)
    position = {i: k for k, i in enumerate(item_ids)}
    keys = tie_keys(item_ids, proto.seed)
    for j, (user, cands) in enumerate(zip(rep.users, knn.asked)):
        assert cands[0] == ml100k_split.test[user]
        idx = np.array([position[c] for c in cands])
        hist = ml100k_split.test_history[user]
        for system in (knn, pop):  # the rank the dense vector gives over the same candidates
            assert rep.ranks[system.name][j] == rank_of_target(system.score_array(hist)[idx], keys[idx], 0)


def test_itemknn_scores():
    items = [Item(id=i, title=i) for i in "abcde"]
    log = [Interaction(user=u, item=i, timestamp=t) for t, (u, i) in enumerate(
        [("1", "a"), ("1", "b"), ("2", "a"), ("2", "b"), ("3", "a"), ("3", "c"), ("4", "d")])]
    cat = Catalog("t", items, log)
    knn = ItemKNNScorer(k=10)
    knn.fit(cat)
    # |U_a|=3, |U_b|=2, |U_c|=1, co(a,b)=2, co(a,c)=1
    s = knn.score_array(["a"])
    assert s.tolist() == pytest.approx([0, 2 / math.sqrt(6), 1 / math.sqrt(3), 0, 0])
    assert knn.score(["a"], ["b", "zzz"]) == {"b": pytest.approx(2 / math.sqrt(6))}
    assert knn.score_array([]).tolist() == [0.0] * 5
    dk = ItemKNNScorer(k=10, decay=0.5)
    dk.fit(cat)
    # history oldest first: b (weight 0.5), c (weight 1)
    assert dk.score_array(["b", "c"])[0] == pytest.approx(0.5 * 2 / math.sqrt(6) + 1 / math.sqrt(3))
    k1 = ItemKNNScorer(k=1)
    k1.fit(cat)
    assert k1.score_array(["a"]).tolist() == pytest.approx([0, 2 / math.sqrt(6), 0, 0, 0])  # c pruned
    pop = PopularityScorer()
    pop.fit(cat)
    assert pop.score_array([]).tolist() == [3, 2, 1, 1, 0]


# ----------------------------------------------------------------------------------------------
# harness end to end, outputs
# ----------------------------------------------------------------------------------------------
class PositionSystem(PopularityScorer):
    def fit(self, train):
        super().fit(train)
        self.extra = {"parse_failure_rate": 0.125,
                      "position_pairs": [(p, min(20, p + d)) for p in range(1, 21) for d in (0, 1, 3)]}


def test_evaluate_end_to_end_writes_outputs(ml100k_split, tmp_path):
    proto = EvalProtocol(name="tiny", users=25, bootstrap=200, seed=3)
    systems = [PopularityScorer(), ItemKNNScorer(), PositionSystem(name="llm")]
    rep = evaluate(ml100k_split.catalog, systems, proto, progress=False, split=ml100k_split,
                   output_dir=tmp_path, command="mediarec eval --protocol tiny")
    assert rep.n_users == 25 and not rep.partial and rep.reference == "pop"
    data = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("dataset", "protocol", "n_users", "seed", "systems", "command", "versions", "machine", "date"):
        assert key in data
    assert data["n_users"] == 25 and data["seed"] == 3 and data["protocol"]["name"] == "tiny"
    assert data["command"] == "mediarec eval --protocol tiny"
    assert set(data["versions"]) >= {"python", "numpy", "mediarec"}
    assert {"platform", "cpu_count"} <= set(data["machine"])
    assert list(data["systems"]) == ["pop", "itemknn", "llm"]
    for name, m in data["systems"].items():
        for k in (5, 10, 20):
            for met in ("ndcg", "hr"):
                assert 0 <= m[f"{met}@{k}"] <= 1
                lo, hi = m["ci95"][f"{met}@{k}"]
                assert lo <= m[f"{met}@{k}"] <= hi
        assert 0 <= m["mrr"] <= 1 and "mrr" in m["ci95"]
        assert "recall@10" not in m  # one target per user: recall@k would repeat hit@k
        assert 0 < m["coverage@10"] <= 1 and m["mean_popularity@10"] > 0
        assert m["seconds"] >= 0 and m["users_per_s"] > 0 and m["n_users"] == 25
        assert isinstance(m["extra"], dict)
        if name != "pop":
            assert 0 < m["p_vs_pop"]["ndcg@10"] <= 1
    assert data["systems"]["llm"]["extra"]["parse_failure_rate"] == 0.125
    # same numbers in memory as on disk
    assert data["systems"]["itemknn"]["ndcg@10"] == pytest.approx(rep.systems["itemknn"]["ndcg@10"])
    assert data["systems"]["itemknn"]["hr@10"] == pytest.approx(hit_at_k(rep.ranks["itemknn"], 10).mean())
    # report.md carries the same numbers
    md = (tmp_path / "report.md").read_text()
    assert "mediarec eval --protocol tiny" in md
    for name, m in data["systems"].items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        for met in ("hr@10", "ndcg@10", "mrr", "hr@5", "ndcg@20"):
            assert f"{m[met]:.4f} [{m['ci95'][met][0]:.4f}, {m['ci95'][met][1]:.4f}]" in row
        assert f"{m['coverage@10']:.4f}" in row
    for png in ("metrics.png", "rank_hist.png", "position_bias.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "position_pairs.json").read_text())["llm"][0] == [1, 1]
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))
    # the sampled protocol runs end to end too
    rep_s = evaluate(ml100k_split.catalog, systems[:2], EvalProtocol(mode="sampled", users=25, ks=(1, 5, 10)),
                     progress=False, split=ml100k_split)
    assert rep_s.systems["itemknn"]["hr@10"] >= rep_s.systems["itemknn"]["hr@5"] >= rep_s.systems["itemknn"]["hr@1"]


def test_ctrl_c_keeps_finished_users(ml100k_split, tmp_path):
    class Interrupting(PopularityScorer):
        def score_array(self, history):
            self.n = getattr(self, "n", 0) + 1
            if self.n > 7:
                raise KeyboardInterrupt
            return super().score_array(history)

    systems = [PopularityScorer(), Interrupting(name="stops"), ItemKNNScorer()]
    rep = evaluate(ml100k_split.catalog, systems, EvalProtocol(users=30, bootstrap=50), progress=True,
                   split=ml100k_split, output_dir=tmp_path, command="x")
    assert rep.partial and rep.users_done == 7 and rep.interrupted_system == "stops"
    assert list(rep.systems) == ["pop", "stops"]  # itemknn never started
    assert rep.systems["pop"]["n_users"] == 30 and rep.systems["stops"]["n_users"] == 7
    data = json.loads((tmp_path / "metrics.json").read_text())
    assert data["partial"] is True and data["users_done"] == 7
    assert "Partial run" in (tmp_path / "report.md").read_text()


def test_write_report_is_rerunnable(ml100k_split, tmp_path):
    rep = evaluate(ml100k_split.catalog, [PopularityScorer()], EvalProtocol(users=10, bootstrap=20),
                   progress=False, split=ml100k_split)
    paths = write_report(rep, tmp_path / "out", "cmd one")
    paths2 = write_report(rep, tmp_path / "out", "cmd two")
    assert paths == paths2 and "cmd two" in paths["report.md"].read_text()
    assert re.search(r"\| pop \| 0\.\d{4} \[", paths["report.md"].read_text())


# ----------------------------------------------------------------------------------------------
# a real quality check
# ----------------------------------------------------------------------------------------------
def test_itemknn_beats_popularity_on_ml100k_full_ranking(ml100k_split):
    proto = EvalProtocol.load("ml-100k-full")
    rep = evaluate(ml100k_split.catalog, [PopularityScorer(), ItemKNNScorer()], proto, progress=False,
                   split=ml100k_split)
    assert rep.n_users == 943
    pop, knn = rep.systems["pop"], rep.systems["itemknn"]
    for name, m in rep.systems.items():
        print(f"{name}: HR@10 {m['hr@10']:.4f} NDCG@10 {m['ndcg@10']:.4f} MRR {m['mrr']:.4f} "
              f"coverage@10 {m['coverage@10']:.3f} {m['seconds']:.2f}s ({m['users_per_s']:.0f} users/s)")
    assert knn["hr@10"] > pop["hr@10"] and knn["ndcg@10"] > pop["ndcg@10"]
    assert knn["coverage@10"] > pop["coverage@10"]
    assert pop["seconds"] + knn["seconds"] < 20  # a few seconds in practice
