"""The sequential model as the product uses it (issue 29): a third retrieval side, the learned
stage's ``seq`` features, and ``mediarec index`` training it where the catalog is large enough.

A tiny sequential catalog (users walk 30 items in steps of +1) trains in seconds with real torch
steps, real Chroma and the real MiniLM embedder."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import chromadb

from mediarec.catalog.loaders.sequences import sequence_catalog
from mediarec.index import seq as seqmod
from mediarec.index.retriever import Retriever
from mediarec.index.seq import SeqSettings, SeqSource
from mediarec.index.store import IndexBuilder
from mediarec.rank.features import FEATURE_GROUPS
from mediarec.rank.learned import LearnedSettings
from mediarec.recommender import Recommender

N_ITEMS = 30
TINY = SeqSettings(dim=16, layers=1, heads=1, max_len=12, dropout=0.1, lr=5e-3, batch=16, epochs=25, patience=25)


@pytest.fixture(scope="module")
def walk(tmp_path_factory, embedder):
    """(catalog, built index): 80 users each walking 14 steps of +1 from a random start."""
    rng = np.random.default_rng(0)
    seqs = {f"u{k}": [f"{(int(s) + t) % N_ITEMS}" for t in range(14)]
            for k, s in enumerate(rng.integers(0, N_ITEMS, 80))}
    cat = sequence_catalog("walk", seqs)
    client = chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("chroma")))
    return cat, IndexBuilder(cat, client, embedder=embedder).build()


def test_seq_candidates_reach_the_retrieval_list(walk, tmp_path):
    cat, index = walk
    src = SeqSource(tmp_path, mode="on", settings=TINY)
    model = src.model_for(cat, train=True)
    assert model is not None and model.extra["trained"] is True
    assert str(tmp_path) in src.status
    history = [str(i) for i in range(10, 16)]
    with_seq = Retriever(index, seq=model).candidates(history, k=5)
    assert all(c.seq_score is not None for c in with_seq)
    assert any("seq" in c.sources for c in with_seq)
    # the model learned the walk: the next item leads the fused list
    assert with_seq[0].item.id == "16"
    without = Retriever(index).candidates(history, k=5)
    assert all(c.seq_score is None and "seq" not in c.sources for c in without)
    # the full ranking agrees with the pool's fused scores
    full = Retriever(index, seq=model).score_all(history)
    assert index.item_ids[int(np.argmax(full))] == "16"
    assert full[index.position("16")] == pytest.approx(with_seq[0].score, rel=1e-6)


def test_seq_feature_group_in_the_learned_model_when_available(walk, tmp_path):
    cat, index = walk
    stage = LearnedSettings(min_examples=20, n_estimators=20, min_child_samples=5, positions_per_user=3)
    rec = Recommender(second_stage=stage, home=tmp_path, seq=SeqSource(tmp_path, mode="on", settings=TINY))
    rec.serve(cat, index, train=True)
    assert rec.stage.ranker is not None and rec.stage.ranker.booster is not None
    assert set(FEATURE_GROUPS["seq"]) <= set(rec.stage.ranker.features)
    # two models: the served one, and the one of the held-out training catalogue (no held-out item)
    assert len(list((tmp_path / "seq").rglob("model.pt"))) == 2
    off = Recommender(second_stage=stage, home=tmp_path, seq=SeqSource(tmp_path, mode="off"))
    off.serve(cat, index, train=True)
    assert not set(FEATURE_GROUPS["seq"]) & set(off.stage.ranker.features)
    assert off.stage.path != rec.stage.path  # another key: a model never serves without its features
    assert off.settings_report()["seq"] == "sequential model off"


def test_a_stored_model_serves_without_training(walk, tmp_path):
    cat, _ = walk
    assert SeqSource(tmp_path, mode="on", settings=TINY, may_train=False).model_for(cat, train=True) is None
    SeqSource(tmp_path, mode="on", settings=TINY).model_for(cat, train=True)
    reader = SeqSource(tmp_path, mode="on", settings=TINY, may_train=False)
    got = reader.model_for(cat, train=True)
    assert got is not None and got.extra["trained"] is False


def test_auto_skips_a_small_catalog_and_says_why(walk, tmp_path):
    cat, _ = walk
    src = SeqSource(tmp_path, mode="auto", settings=TINY)
    assert src.model_for(cat, train=True) is None
    assert src.status == f"sequential model skipped: {len(cat.positives):,} interactions < {seqmod.MIN_INTERACTIONS:,}"
    assert not (tmp_path / "seq").exists()


def test_auto_skips_a_catalog_of_too_many_items_and_says_why(walk, tmp_path, monkeypatch):
    cat, _ = walk
    users = sum(1 for h in cat.by_user.values() if len(h) >= 2)
    monkeypatch.setattr(seqmod, "MIN_INTERACTIONS", 1)
    monkeypatch.setattr(seqmod, "MIN_USERS", 1)
    monkeypatch.setattr(seqmod, "MAX_ITEMS", len(cat.items))  # as many as the line allows: trained
    assert users >= 1 and SeqSource(tmp_path, mode="auto", settings=TINY).skip_reason(cat) is None
    monkeypatch.setattr(seqmod, "MAX_ITEMS", len(cat.items) - 1)
    src = SeqSource(tmp_path, mode="auto", settings=TINY)
    assert src.model_for(cat, train=True) is None
    assert src.status.startswith(f"sequential model skipped: {len(cat.items):,} items > {len(cat.items) - 1:,}")
    assert "--seq on" in src.status and not (tmp_path / "seq").exists()
    assert SeqSource(tmp_path, mode="on", settings=TINY).skip_reason(cat) is None  # asked for: trained


def test_without_torch_the_product_goes_on(walk, tmp_path, monkeypatch):
    cat, _ = walk
    monkeypatch.setattr(seqmod, "torch_available", lambda: False)
    src = SeqSource(tmp_path, mode="on", settings=TINY)
    assert src.model_for(cat, train=True) is None
    assert "torch is not installed" in src.status and "mediarec[seq]" in src.status


def test_index_skips_the_demo_with_the_message(linked_home):
    from conftest import run_cli

    r = run_cli("index", "--dataset", "demo", "--no-learned", home=linked_home)
    assert r.returncode == 0, r.stderr
    line = [x for x in r.stdout.splitlines() if x.startswith("sequential model")]
    assert len(line) == 1 and "interactions < 200,000" in line[0], r.stdout
    assert not (linked_home / "seq").exists()


def test_batched_scores_equal_one_at_a_time(walk, tmp_path):
    """The learned stage scores its training examples in batches: the same numbers as one by one."""
    from mediarec.rank.features import ALL_FEATURES, Signals

    cat, index = walk
    model = SeqSource(tmp_path, mode="on", settings=TINY).model_for(cat, train=True)
    histories = [cat.history(u)[:n] for u, n in (("u1", 3), ("u2", 9), ("u3", 14), ("u4", 1))]
    one = Signals(cat, index, index.collab, seq=model)
    batched = Signals(cat, index, index.collab, seq=model)
    batched.prime_seq(histories)
    cols = [ALL_FEATURES.index(f) for f in FEATURE_GROUPS["seq"]]
    for h in histories:
        f1, f2 = one.fused(h), batched.fused(h)
        np.testing.assert_allclose(f1, f2, rtol=1e-5, atol=1e-6)
        rows = np.flatnonzero(np.isfinite(f1))[:20]
        x1, x2 = one.features(h, rows, f1), batched.features(h, rows, f2)
        np.testing.assert_allclose(x1[:, cols], x2[:, cols], rtol=1e-4, atol=1e-5)
        assert x1[:, cols[0]].max() == pytest.approx(1.0)  # the pool's best has exp(0)


def test_a_model_stored_with_on_serves_under_auto(walk, tmp_path):
    """`mediarec index --seq on` on a small catalog, then `recommend` (auto): the stored model serves."""
    cat, _ = walk
    SeqSource(tmp_path, mode="on", settings=TINY).model_for(cat, train=True)
    auto = SeqSource(tmp_path, mode="auto", settings=TINY, may_train=False)
    got = auto.model_for(cat, train=True)
    assert got is not None and got.extra["trained"] is False
    assert auto.status.startswith("sequential model: stored")


def test_eval_names_choose_the_sequential_model(tmp_path):
    from mediarec.config import Settings
    from mediarec.eval.systems import IndexProvider, build_systems, split_seq

    assert split_seq("learned+seq+llm") == ("learned+llm", "on")
    assert split_seq("hybrid+noseq") == ("hybrid", "off")
    assert split_seq("hybrid+summaries") == ("hybrid+summaries", "auto")
    provider = IndexProvider(Settings(home=tmp_path))
    systems = build_systems(["hybrid", "hybrid+seq", "collab", "learned+noseq", "learned+seq"], provider)
    assert [s.name for s in systems] == ["hybrid", "hybrid+seq", "collab", "learned+noseq", "learned+seq"]
    assert [s.seq.mode if s.seq is not None else None for s in systems] == ["auto", "on", None, "off", "on"]
