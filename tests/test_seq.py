"""The sequential model (index/seq.py): real training steps on tiny catalogs, determinism, resume,
no held-out target in training, NaN-free scores, storage by fingerprint, the eval system `seq`."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mediarec.catalog.loaders.sequences import sequence_catalog
from mediarec.errors import ConfigError
from mediarec.eval.protocol import EvalProtocol
from mediarec.eval.split import leave_last_out
from mediarec.index import seq as seqmod
from mediarec.index.seq import SeqScorer, SeqSettings, ndcg_hr_at, train

N_ITEMS = 30
TINY = SeqSettings(dim=16, layers=1, heads=1, max_len=12, dropout=0.1, lr=5e-3, batch=16, epochs=30, patience=30)


def cyclic_histories(n_users: int = 60, length: int = 10, seed: int = 0) -> list[list[int]]:
    """Each user walks the catalog in steps of +1 from a random start: learnable, not memorisable."""
    rng = np.random.default_rng(seed)
    return [[(int(s) + t) % N_ITEMS for t in range(length)] for s in rng.integers(0, N_ITEMS, n_users)]


def test_a_tiny_catalog_trains_and_learns_the_next_item():
    full = cyclic_histories()
    train_h = [h[:-2] for h in full]
    val = [h[-2] for h in full]
    model, r = train(N_ITEMS, train_h, TINY, val_targets=val)
    assert r.epochs_run >= 1 and len(r.history) == r.epochs_run
    assert r.history[-1]["loss"] < r.history[0]["loss"]  # real steps that reduce the loss
    scores = model.score_histories([h[:-1] for h in full])
    _, hr = ndcg_hr_at(scores, np.array([h[-1] for h in full]), [h[:-1] for h in full])
    assert hr.mean() > 0.8, hr.mean()  # chance is 10 / 21 unseen items ≈ 0.48


def test_a_long_history_trains_on_every_window_once():
    h = list(range(25))  # 24 (input, next) pairs; windows of 10 from the end: 10, 10, 4
    xs, ys = seqmod.training_windows([h, [3]], max_len=10, windows=True)
    assert [len(x) for x in xs] == [10, 10, 4]  # the one-item history gives no pair
    pairs = sorted((int(a) - 1, int(b)) for x, y in zip(xs, ys) for a, b in zip(x, y))
    assert pairs == [(i, i + 1) for i in range(24)]
    assert list(ys[0]) == list(range(15, 25))  # the latest window first, ending at the latest item
    latest_only, _ = seqmod.training_windows([h], max_len=10, windows=False)
    assert len(latest_only) == 1 and list(latest_only[0]) == list(xs[0])


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_with_a_seed_and_different_with_another():
    h = cyclic_histories(30)
    s = TINY.__class__(**{**TINY.__dict__, "epochs": 2})
    m1, r1 = train(N_ITEMS, [x[:-2] for x in h], s, val_targets=[x[-2] for x in h])
    m2, r2 = train(N_ITEMS, [x[:-2] for x in h], s, val_targets=[x[-2] for x in h])
    m3, _ = train(N_ITEMS, [x[:-2] for x in h], SeqSettings(**{**s.__dict__, "seed": 1}),
                  val_targets=[x[-2] for x in h])
    assert _states_equal(m1.net.state_dict(), m2.net.state_dict())
    assert [e["loss"] for e in r1.history] == [e["loss"] for e in r2.history]
    assert not _states_equal(m1.net.state_dict(), m3.net.state_dict())


def test_resume_equals_an_uninterrupted_run(tmp_path):
    h = cyclic_histories(40)
    hist, val = [x[:-2] for x in h], [x[-2] for x in h]
    s4 = SeqSettings(**{**TINY.__dict__, "epochs": 4})
    train(N_ITEMS, hist, s4, val_targets=val, workdir=tmp_path / "whole")
    # interrupted after epoch 2 (the checkpoint is what a killed run leaves), then resumed to 4
    _, first = train(N_ITEMS, hist, SeqSettings(**{**TINY.__dict__, "epochs": 2}), val_targets=val,
                     workdir=tmp_path / "parts")
    assert first.epochs_run == 2
    _, resumed = train(N_ITEMS, hist, s4, val_targets=val, workdir=tmp_path / "parts")
    assert resumed.resumed_from == 2 and resumed.epochs_run == 4
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)
    assert _states_equal(a["model"], b["model"])
    assert a["history"] == [{**e, "seconds": a["history"][i]["seconds"]} for i, e in enumerate(b["history"])]


def test_early_stopping_reads_validation_targets_only_and_stops():
    h = cyclic_histories(30)
    # validation targets that no model can predict (a fixed item never in any history): no
    # improvement after the first epoch, so it stops after `patience` more epochs
    s = SeqSettings(**{**TINY.__dict__, "epochs": 50, "patience": 3})
    hist = [[i for i in x[:-2] if i != 0] for x in h]
    _, r = train(N_ITEMS, hist, s, val_targets=[0] * len(hist))
    assert r.stopped_early and r.epochs_run < 50
    assert r.epochs_run == r.best_epoch + 3


def test_scores_are_finite_for_short_and_empty_histories():
    model, _ = train(N_ITEMS, cyclic_histories(20), SeqSettings(**{**TINY.__dict__, "epochs": 1}))
    s = model.score_histories([[], [3], list(range(25))])  # empty, one item, longer than max_len
    assert s.shape == (3, N_ITEMS) and np.isfinite(s).all()


def test_a_nan_score_is_an_error_not_a_hit(monkeypatch):
    model, _ = train(N_ITEMS, cyclic_histories(20), SeqSettings(**{**TINY.__dict__, "epochs": 1}))
    with torch.no_grad():
        model.net.items.weight[5] = float("nan")
    from mediarec.errors import ModelError

    with pytest.raises(ModelError, match="NaN"):
        model.score_histories([[5, 6]])


def _catalog(histories: dict[str, list[str]]):
    return sequence_catalog("tiny-seq", histories)


def test_no_test_or_validation_target_reaches_training(tmp_path, monkeypatch):
    """Plant a test target and a validation target (items nowhere else) and show that neither is
    in anything the model trains on, fitted the way the harness fits it."""
    rng = np.random.default_rng(3)
    seqs = {f"u{k}": [f"i{(int(s) + t) % N_ITEMS}" for t in range(8)] for k, s in
            enumerate(rng.integers(0, N_ITEMS, 25))}
    seqs["u0"].append("planted-test")
    seqs["u1"] += ["planted-valid", "i3"]
    cat = _catalog(seqs)
    split = leave_last_out(cat)
    assert split.test["u0"] == "planted-test" and split.valid["u1"] == "planted-valid"
    seen_by_train: dict = {}
    real = seqmod.train

    def spy(n_items, histories, settings, **kw):
        seen_by_train["histories"] = [list(h) for h in histories]
        seen_by_train["val"] = list(kw.get("val_targets") or [])
        return real(n_items, histories, settings, **kw)

    monkeypatch.setattr(seqmod, "train", spy)
    scorer = SeqScorer(tmp_path, SeqSettings(**{**TINY.__dict__, "epochs": 1}))
    scorer.fit(split.fit_catalog("test"))  # what the harness fits for the test phase
    idx = {i: k for k, i in enumerate(scorer.item_ids)}
    trained_on = {i for h in seen_by_train["histories"] for i in h}
    assert idx["planted-test"] not in trained_on
    assert idx["planted-valid"] not in trained_on
    assert idx["planted-test"] not in seen_by_train["val"]  # not even for early stopping
    assert idx["planted-valid"] in seen_by_train["val"]  # it is u1's validation target, read only there
    # and the model scores u0's test history without having seen the target
    assert np.isfinite(scorer.score_array(split.test_history["u0"])).all()


def test_stored_by_fingerprint_and_reused(tmp_path):
    seqs = {f"u{k}": [f"i{(k + t) % N_ITEMS}" for t in range(8)] for k in range(20)}
    cat = _catalog(seqs)
    s = SeqSettings(**{**TINY.__dict__, "epochs": 2})
    a = SeqScorer(tmp_path, s)
    a.fit(cat)
    assert a.extra["trained"] is True
    stored = list((tmp_path / "seq").rglob("model.pt"))
    assert len(stored) == 1
    b = SeqScorer(tmp_path, s)
    b.fit(cat)
    assert b.extra["trained"] is False and b.extra["fingerprint"] == a.extra["fingerprint"]
    hist = cat.history("u3")[:4]
    np.testing.assert_array_equal(a.score_array(hist), b.score_array(hist))
    # another catalog (one more interaction) is another model
    seqs["u0"].append("i9")
    c = SeqScorer(tmp_path, s)
    c.fit(_catalog(seqs))
    assert c.extra["fingerprint"] != a.extra["fingerprint"] and c.extra["trained"] is True


def test_an_ensemble_averages_its_members_each_stored_as_a_single_run_of_its_seed(tmp_path):
    """``ensemble=2``: the models of seeds 0 and 1, each under the fingerprint a single run of that
    seed stores (so a member trained alone, e.g. by ``python -m mediarec.index.seq --seed 1``, is
    reused), scored as the mean of their scores; the ensemble's key names both members."""
    seqs = {f"u{k}": [f"i{(k + t) % N_ITEMS}" for t in range(8)] for k in range(20)}
    cat = _catalog(seqs)
    one = SeqSettings(**{**TINY.__dict__, "epochs": 2})
    seed1 = SeqSettings(**{**one.__dict__, "seed": 1})
    alone = SeqScorer(tmp_path, seed1)
    alone.fit(cat)  # the second member, trained on its own first
    both = SeqScorer(tmp_path, SeqSettings(**{**one.__dict__, "ensemble": 2}))
    assert both.fit(cat)
    members = both.extra["members"]
    assert [m["trained"] for m in members] == [True, False]  # seed 0 trained now, seed 1 reused
    assert members[1]["fingerprint"] == alone.extra["fingerprint"]
    assert both.extra["fingerprint"] == "+".join(m["fingerprint"] for m in members)
    first = SeqScorer(tmp_path, one)
    first.fit(cat)
    assert first.extra["trained"] is False and first.extra["fingerprint"] == members[0]["fingerprint"]
    hist = cat.history("u3")[:4]
    mean = (first.score_array(hist) + alone.score_array(hist)) / 2
    np.testing.assert_allclose(both.score_array(hist), mean, rtol=1e-5, atol=1e-6)
    assert not np.allclose(first.score_array(hist), alone.score_array(hist))  # two different models
    # without training allowed, a missing member means no model
    assert SeqScorer(tmp_path, SeqSettings(**{**one.__dict__, "ensemble": 3})).fit(cat, may_train=False) is False


def test_eval_passes_the_ensemble_to_the_seq_system_and_the_sources(tmp_home):
    from mediarec.cli import build_parser
    from mediarec.eval.systems import IndexProvider, build_systems

    args = build_parser().parse_args(["eval", "--systems", "seq,learned+seq", "--seq-ensemble", "2"])
    assert args.seq_ensemble == 2
    seq, learned = build_systems(["seq", "learned+seq"], IndexProvider(), seq_ensemble=args.seq_ensemble)
    assert seq.settings.ensemble == 2 and learned.seq.settings.ensemble == 2


def test_without_torch_the_error_names_the_pinned_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # what an install without torch looks like
    with pytest.raises(ConfigError, match=r"mediarec\[seq\].*torch==2\.13\.0"):
        seqmod.torch_or_error()


def test_eval_seq_without_torch_is_one_line_and_exit_2(monkeypatch, tmp_home):
    import sys

    from conftest import run_cli

    monkeypatch.setitem(sys.modules, "torch", None)
    r = run_cli("eval", "--dataset", "demo", "--systems", "pop,seq", "--users", "5", home=tmp_home)
    assert r.returncode == 2 and "mediarec[seq]" in r.stderr and "Traceback" not in r.stderr


def test_cuda_is_a_clear_error_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(ConfigError, match="no CUDA device"):
        seqmod.check_device("cuda")


def test_eval_system_seq_runs_in_the_harness(tmp_path):
    from mediarec.eval import evaluate
    from mediarec.eval.baselines import PopularityScorer

    rng = np.random.default_rng(5)
    seqs = {f"u{k}": [f"i{(int(s) + t) % N_ITEMS}" for t in range(10)] for k, s in
            enumerate(rng.integers(0, N_ITEMS, 50))}
    cat = _catalog(seqs)
    scorer = SeqScorer(tmp_path, TINY)
    rep = evaluate(cat, [PopularityScorer(), scorer], EvalProtocol(bootstrap=0), progress=False)
    assert rep.n_users == 50
    assert rep.systems["seq"]["hr@10"] > rep.systems["pop"]["hr@10"]


def test_metric_excludes_seen_items_but_never_the_target():
    scores = np.array([[5.0, 4.0, 3.0, 2.0], [5.0, 4.0, 3.0, 2.0]])
    # row 0: item 0 seen (excluded) -> target 2 ranks second; row 1: the target was seen before too
    nd, hr = ndcg_hr_at(scores, np.array([2, 0]), [[0], [0, 1]], k=1)
    assert list(hr) == [0.0, 1.0]
    nd, hr = ndcg_hr_at(scores, np.array([2, 0]), [[0], [0, 1]], k=2)
    assert list(hr) == [1.0, 1.0] and nd[0] == pytest.approx(1 / np.log2(3))


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    from mediarec.errors import ModelError

    h = cyclic_histories(20)
    train(N_ITEMS, h, SeqSettings(**{**TINY.__dict__, "epochs": 1}), workdir=tmp_path)
    with pytest.raises(ModelError, match="other data or settings"):
        train(N_ITEMS, h, SeqSettings(**{**TINY.__dict__, "epochs": 2, "lr": 1e-2}), workdir=tmp_path)
