"""The learned second stage on real data: its features, what it trains on, how it is stored, and
what serves when it cannot (real MovieLens 100k, real Chroma, the real embedder, real LightGBM)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from mediarec.catalog import Catalog, Interaction, Item
from mediarec.config import get_settings
from mediarec.errors import ConfigError
from mediarec.eval import leave_last_out
from mediarec.eval.systems import IndexProvider, build_systems, parse_learned_name
from mediarec.index.collab import CollabModel, CollabSettings, ease_matrix, gram_matrix, item_sequences, \
    transition_matrix
from mediarec.rank.features import ALL_FEATURES, Signals, sparse_transitions
from mediarec.rank.learned import LearnedSettings, SecondStage, holdout, learned_path
from mediarec.app import from_catalog

SMALL = LearnedSettings(positions_per_user=2, n_estimators=60)  # a real model, trained in seconds


@pytest.fixture(scope="module")
def split(ml100k):
    return leave_last_out(ml100k)


@pytest.fixture(scope="module")
def train_index(split, module_home, embedder):
    return IndexProvider(embedder=embedder).get(split.train_val_catalog)


def test_sparse_transitions_equal_the_dense_matrix(ml100k):
    model = CollabModel.fit(ml100k, CollabSettings(), factorise=False)
    dense = transition_matrix(item_sequences(ml100k, model.item_ids), len(model.item_ids), 5, 5.0)
    assert np.allclose(sparse_transitions(ml100k, model).toarray(), dense, atol=1e-6)


def test_collab_features_split_the_blend_into_its_parts(split, train_index):
    """M = α·EASE + (1-α)·T: the features show T and the EASE part separately, and they add up."""
    cat = split.train_val_catalog
    sig = Signals(cat, train_index, train_index.collab)
    user = next(iter(cat.by_user))
    hist = list(cat.by_user[user])
    fused = sig.fused(hist)
    rows = np.argsort(-fused)[:50]
    x = sig.features(hist, rows, fused)
    col = {f: x[:, ALL_FEATURES.index(f)] for f in ("collab", "trans", "ease", "fused_rank")}
    m = train_index.collab
    wanted = [h.item for h in hist if h.is_positive]
    ease = ease_matrix(gram_matrix(item_sequences(cat, m.item_ids), len(m.item_ids)), m.settings.ease_lambda)
    rows_m, w = m._weighted_rows(wanted, None, None)
    pos = {i: k for k, i in enumerate(m.item_ids)}
    expect_ease = (w @ ease[rows_m])[[pos[train_index.item_ids[r]] for r in rows]]
    assert np.allclose(col["ease"] * 1.0, expect_ease / expect_ease.max(), atol=1e-4)
    assert list(col["fused_rank"]) == list(range(1, 51))  # the pool came in fused order
    assert np.isnan(x[:, ALL_FEATURES.index("request")]).all()  # no request, no request score


def test_held_out_positions_are_not_in_the_model_that_scores_them(split):
    cat = split.train_val_catalog
    inner, examples = holdout(cat, LearnedSettings(positions_per_user=3))
    assert examples
    inner_pairs = {(x.user, x.item) for x in inner.interactions}
    for e in examples:
        assert (e.user, e.target) not in inner_pairs  # the target never informs its own features
        assert any(h.is_positive for h in e.history)  # something to rank from
    per_user = {}
    for e in examples:
        per_user[e.user] = per_user.get(e.user, 0) + 1
    assert max(per_user.values()) == 3
    assert len(inner.interactions) == len(cat.interactions) - len(examples)


def test_a_planted_test_target_never_reaches_a_training_example(ml100k, module_home, embedder):
    """An item only one user consumed, as their last (test) interaction: the harness fits the
    learned stage on the training part, so no example has it as target or in a history."""
    planted = Item(id="planted-1", title="A Film Nobody Else Saw", year=1997, genres=("Drama",))
    user = next(iter(ml100k.by_user))
    last = max(x.timestamp for x in ml100k.by_user[user])
    cat = ml100k.extend(items=[planted], interactions=[Interaction(user=user, item="planted-1", timestamp=last + 1,
                                                                   rating=5.0)])
    sp = leave_last_out(cat)
    assert sp.test[user] == "planted-1"
    fit_cat = sp.fit_catalog("test")
    _, examples = holdout(fit_cat, SMALL)
    assert all(e.target != "planted-1" and all(h.item != "planted-1" for h in e.history) for e in examples)
    system = build_systems(["learned"], IndexProvider(embedder=embedder))[0]
    system.second_stage = SMALL
    system.fit(fit_cat)
    meta = system.stage.ranker.meta
    assert meta["catalog_fingerprint"] == fit_cat.fingerprint() != cat.fingerprint()
    assert meta["examples"] == len(examples)


def test_trained_stage_is_stored_reused_and_rebuilt_when_corrupt(split, train_index, module_home):
    cat = split.train_val_catalog
    stage = SecondStage(cat, train_index, None, SMALL, module_home)
    assert stage.ranker is None and not stage.path.exists() and not stage.active  # building never trains
    assert "no learned model trained" in stage.status
    assert stage.train_missing() and stage.ranker is not None and stage.path.exists()
    assert not stage.train_missing()  # a model is there: nothing to do
    stored = json.loads(stage.path.read_text())
    assert stored["meta"]["fingerprint"] == stage.fingerprint
    assert stored["meta"]["examples_in_pool"] >= SMALL.min_examples
    again = SecondStage(cat, train_index, None, SMALL, module_home)
    assert again.ranker.meta["date"] == stage.ranker.meta["date"]  # read back, not retrained
    hist = list(cat.by_user[next(iter(cat.by_user))])
    fused = Signals(cat, train_index, train_index.collab).fused(hist)
    assert stage.active, stage.status  # the trained model serves, so the reorder below is what it does
    rows, p = stage.rank(hist, fused)
    assert len(rows) == SMALL.pool and np.all(np.diff(p) <= 0)
    assert set(rows) == set(np.argsort(-fused)[:SMALL.pool])  # a reorder of the pool, nothing else

    stage.path.write_text("{not json")  # corrupt: without training allowed, fusion serves
    broken = SecondStage(cat, train_index, None, SMALL, module_home)
    assert broken.ranker is None and not broken.active
    assert "unreadable" in broken.status and "fused retrieval serves" in broken.status
    rebuilt = SecondStage(cat, train_index, None, SMALL, module_home)
    assert rebuilt.train_missing()
    assert rebuilt.ranker is not None and "retrained" in rebuilt.status
    assert json.loads(rebuilt.path.read_text())["meta"]["fingerprint"] == rebuilt.fingerprint


def test_a_model_built_for_another_catalog_is_not_used(split, train_index, module_home):
    cat = split.train_val_catalog
    stage = SecondStage(cat, train_index, None, SMALL, module_home)
    stage.train_missing()
    other = SMALL.model_copy(update={"seed": 1})  # another fingerprint, pointed at the same file
    foreign = SecondStage(cat, train_index, None, other, module_home,
                          key=stage.path.stem.split("-")[-1])
    assert foreign.ranker is None and "another catalogue" in foreign.status


def test_too_few_histories_leave_the_fused_retrieval_serving_and_say_so(linked_home):
    items = [Item(id=str(i), title=f"Film {i}", year=1990 + i % 10, genres=("Drama",)) for i in range(30)]
    inter = [Interaction(user=f"u{u}", item=str((u + k) % 30), timestamp=k) for u in range(8) for k in range(4)]
    inter.append(Interaction(user="single", item="3", timestamp=0))  # one interaction: no example
    cat = Catalog("tiny", items, inter)
    rec = from_catalog(cat, llm="none", index_settings=None, second_stage=LearnedSettings())
    assert rec.stage is not None and not rec.stage.active
    assert "needs 50" in rec.stage.status
    res = rec.recommend(user="u1", k=5)
    assert len(res.items) == 5 and "learned" not in res.stages
    assert any("fused retrieval serves" in n for n in res.notes)
    assert res.settings["second_stage"]["active"] is False
    assert rec.recommend(user="single", k=3).items  # a single interaction still gets a list
    empty = from_catalog(Catalog("no-log", items), llm="none", second_stage=LearnedSettings())
    assert not empty.stage.active and "only 0 training histories" in empty.stage.status
    assert empty.recommend(history=["Film 3"], k=3).items  # the text side still answers


def test_learned_names_parse_and_unknown_groups_are_errors():
    assert parse_learned_name("learned") == ((), False)
    assert parse_learned_name("learned-text-user+llm") == (("text", "user"), True)
    assert parse_learned_name("hybrid") is None
    with pytest.raises(ConfigError, match="unknown feature group"):
        parse_learned_name("learned-colour")
    with pytest.raises(ConfigError, match="needs --llm"):
        build_systems(["learned+llm"], IndexProvider())


def test_learned_path_is_per_catalog_and_key(module_home):
    a = learned_path(module_home, "movie lens", "abc")
    assert a.parent == module_home / "learned" and a.name == "movie-lens-abc.json"
    assert get_settings().home == module_home


def test_the_label_features_do_not_depend_on_the_hash_seed(tmp_path):
    """The genre and tag columns are numbered in one order in every process: with set order they
    followed PYTHONHASHSEED, and the learned model (and whether it served) changed between runs."""
    import subprocess
    import sys

    code = ("import hashlib, types; from mediarec.catalog import load_dataset; "
            "from mediarec.rank.features import Signals; c = load_dataset('demo'); "
            "me = types.SimpleNamespace(item_ids=list(c.items), catalog=c); "
            "m = Signals._incidence(me, lambda it: it.tags); "
            "print(hashlib.sha256(m.indices.tobytes() + m.indptr.tobytes()).hexdigest())")
    out = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                          capture_output=True, text=True, check=True, cwd=tmp_path).stdout for seed in ("1", "2", "3")}
    assert len(out) == 1, out
