"""The exact collaborative side: its scores against an independent dense computation, the stored
matrix's life cycle, and per-catalog tuning on validation users. Real ml-100k, real embedder, real Chroma."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402

from mediarec.catalog.model import Catalog  # noqa: E402
from mediarec.errors import IndexError_  # noqa: E402
from mediarec.eval import EvalProtocol, evaluate, leave_last_out  # noqa: E402
from mediarec.eval.systems import IndexProvider, retrieval_system  # noqa: E402
from mediarec.index.collab import CollabSettings  # noqa: E402
from mediarec.index.retriever import FusionSettings, Retriever  # noqa: E402
from mediarec.index.store import CatalogIndex, IndexBuilder, IndexSettings  # noqa: E402
from mediarec.eval.tuning import tune  # noqa: E402
from mediarec.index.tuning import stored_choice, tuned_path  # noqa: E402
from conftest import first_items  # noqa: E402


@pytest.fixture(scope="module")
def sliced(ml100k) -> Catalog:
    """The 400 first movies of ml-100k and their ratings: real, and quick to embed."""
    return first_items(ml100k, 400, "ml-slice")


@pytest.fixture(scope="module")
def index(sliced, embedder, tmp_path_factory) -> CatalogIndex:
    client = chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("collab-index")))
    settings = IndexSettings(collab=CollabSettings.for_catalog(sliced, use_tuned=False))
    return IndexBuilder(sliced, client, settings, embedder=embedder).build()


def dense_reference(catalog: Catalog, lam: float, alpha: float, window: int, smoothing: float):
    """EASE + next-item transitions written out directly (numpy, float64): (item ids, M)."""
    items = sorted({x.item for x in catalog.interactions})
    col = {i: k for k, i in enumerate(items)}
    users = sorted({x.user for x in catalog.interactions})
    n = len(items)
    x = np.zeros((len(users), n))
    urow = {u: k for k, u in enumerate(users)}
    seqs: dict[str, list[tuple[float, int, int]]] = {}
    for pos, inter in enumerate(catalog.interactions):
        x[urow[inter.user], col[inter.item]] = 1.0
        seqs.setdefault(inter.user, []).append((inter.timestamp, pos, col[inter.item]))
    p = np.linalg.inv(x.T @ x + lam * np.eye(n))
    b = np.eye(n) - p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    t = np.zeros((n, n))
    for seq in seqs.values():
        order = [c for _, _, c in sorted(seq)]  # by time, ties in file order
        for a in range(len(order)):
            for d in range(1, window + 1):
                if a + d < len(order):
                    t[order[a], order[a + d]] += 1.0 / d
    t = t / (t.sum(axis=1, keepdims=True) + smoothing)
    b /= np.abs(b).sum(axis=1).mean()
    t /= np.abs(t).sum(axis=1).mean()
    return items, alpha * b + (1 - alpha) * t


def test_collab_scores_equal_an_independent_dense_computation(index, sliced):
    s = index.settings.collab
    assert s.ordered and s.alpha == 0.5 and s.decay == 0.85  # the time-ordered defaults
    items, m = dense_reference(sliced, s.ease_lambda, s.alpha, s.window, s.transition_smoothing)
    retriever = Retriever(index)
    for user in sliced.users()[::37]:
        history = sliced.history(user)
        rows = [items.index(x.item) for x in history]
        w = s.decay ** np.arange(len(rows) - 1, -1, -1)
        expected = w @ m[rows]
        got = retriever.collab_scores(history)
        got_by_item = np.array([got[index.position(i)] for i in items])
        np.testing.assert_allclose(got_by_item, expected, rtol=2e-4, atol=2e-6 * np.abs(expected).max())
        # And the ranking the fused collab side makes (scaled by its best unseen item) is the same.
        fused = Retriever(index, FusionSettings(text_weight=0.0)).score_all(history)
        unseen = [k for k, i in enumerate(items) if i not in {x.item for x in history}]
        ref_top = [items[k] for k in sorted(unseen, key=lambda k: -expected[k])[:10]]
        got_top = [index.item_ids[j] for j in np.argsort(-fused, kind="stable")[:10]]
        assert got_top == ref_top, user


def test_candidates_and_score_all_agree_on_the_top_10(index, sliced):
    collab_only = Retriever(index, FusionSettings(text_weight=0.0))
    hybrid = Retriever(index)
    hybrid_same = 0
    users = sliced.users()[::11]
    for user in users:
        history = sliced.history(user)
        for r in (collab_only, hybrid):
            full = r.score_all(history)
            top = [index.item_ids[j] for j in np.argsort(-full, kind="stable")[:10]]
            cands = r.candidates(history, k=10)
            got = [c.item.id for c in cands]
            if r is collab_only:
                assert got == top, user  # the exact best items are always in the pool
                assert all(c.score == pytest.approx(float(full[index.position(c.item.id)]), abs=1e-6) for c in cands)
            else:
                hybrid_same += got == top
    assert hybrid_same >= 0.95 * len(users), (hybrid_same, len(users))


def test_matrix_file_missing_stale_or_corrupt(sliced, embedder, tmp_path):
    client = chromadb.PersistentClient(path=str(tmp_path / "idx"))
    settings = IndexSettings(collab=CollabSettings.for_catalog(sliced, use_tuned=False))
    built = IndexBuilder(sliced, client, settings, embedder=embedder).build()
    path = built.matrix_path
    assert path.parent == tmp_path / "idx" and path.exists()
    history = sliced.history(sliced.users()[0])
    want = Retriever(built).collab_scores(history)

    def reader():
        return IndexBuilder(sliced, client, settings, embedder=embedder)

    path.unlink()  # missing: a reader is told what to run; a build fits it again
    with pytest.raises(IndexError_, match="missing.*mediarec index --dataset ml-slice"):
        reader().load()
    np.testing.assert_array_equal(Retriever(reader().build()).collab_scores(history), want)

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # corrupt: half a file
    with pytest.raises(IndexError_, match="missing, incomplete or stale|corrupt"):
        reader().load()
    np.testing.assert_array_equal(Retriever(reader().build()).collab_scores(history), want)

    # stale: the matrix of other settings under this name
    other = IndexSettings(collab=settings.collab.model_copy(update={"ease_lambda": 50.0}))
    stale = IndexBuilder(sliced, chromadb.PersistentClient(path=str(tmp_path / "other")), other, embedder=embedder,
                         prefix="ml-slice").build()
    stale.matrix_path.replace(path)
    with pytest.raises(IndexError_):
        reader().load()
    np.testing.assert_array_equal(Retriever(reader().build()).collab_scores(history), want)


def test_tuning_scores_the_validation_phase_as_the_collab_system_does(sliced, embedder, linked_home):
    grid = {"ease_lambda": (100.0, 500.0), "alpha": (0.5, 1.0), "window": (5,), "decay": (0.85, 1.0)}
    out = tune(sliced, grid=grid)
    assert out["phase"] == "valid" and len(out["grid"]) == 8
    stored = json.loads(tuned_path("ml-slice").read_text())
    assert stored["settings"] == out["settings"]
    assert max(r["ndcg@10"] for r in out["grid"]) == out["validation_ndcg@10"]
    split = leave_last_out(sliced)
    assert out["fingerprints"] == [sliced.fingerprint(), split.train_val_catalog.fingerprint(),
                                   split.train_catalog.fingerprint()]

    # The default point's score is what the harness gives the product's collab system on the
    # valid phase (fitted without any validation or test target).
    default = next(r for r in out["grid"] if (r["ease_lambda"], r["alpha"], r["decay"]) == (500.0, 0.5, 0.85))
    assert out["default_validation_ndcg@10"] == default["ndcg@10"]
    defaults = IndexSettings(collab=CollabSettings.for_catalog(sliced, use_tuned=False))
    provider = IndexProvider(index_settings=defaults, embedder=embedder)
    proto = EvalProtocol(name="t", dataset="ml-slice", bootstrap=0)
    rep = evaluate(sliced, [retrieval_system("collab", provider)], proto, phase="valid", split=split, progress=False)
    assert rep.systems["collab"]["ndcg@10"] == pytest.approx(default["ndcg@10"], abs=1e-9)
    assert rep.systems["collab"]["hr@10"] == pytest.approx(default["hr@10"], abs=1e-9)

    # The choice serves this catalog and its training parts, nothing else.
    chosen = CollabSettings.for_catalog(split.train_val_catalog)
    assert {k: getattr(chosen, k) for k in out["settings"]} == out["settings"]
    other = sliced.replace(interactions=sliced.interactions[1:])
    assert stored_choice(other) is None
    assert CollabSettings.for_catalog(other) == CollabSettings.for_catalog(other, use_tuned=False)
    tuned_path("ml-slice").write_text("{not json")
    assert stored_choice(sliced) is None  # an unreadable choice: the defaults serve


def test_a_protocol_variant_is_stored_beside_the_plain_choice(sliced, linked_home):
    """`mediarec tune --protocol llamarec` tunes the filtered catalog under its own file; both choices
    serve their own catalog (by fingerprint), neither the other's."""
    from mediarec.eval import EvalProtocol
    from mediarec.eval.split import protocol_catalog

    grid = {"ease_lambda": (100.0, 1000.0), "alpha": (1.0,), "window": (5,), "decay": (1.0,)}
    filtered = protocol_catalog(sliced, EvalProtocol(name="core10", core=10, ties="dense-id"))
    assert len(filtered.interactions) < len(sliced.interactions)
    plain = tune(sliced, grid=grid)
    variant = tune(filtered, grid=grid, variant="core10")
    assert tuned_path("ml-slice", variant="core10").name == "ml-slice@core10.json"
    assert tuned_path("ml-slice", variant="core10").is_file() and tuned_path("ml-slice").is_file()
    assert stored_choice(filtered) == variant["settings"]
    assert stored_choice(sliced) == plain["settings"]
    tuned_path("ml-slice").unlink()
    assert stored_choice(sliced) is None and stored_choice(filtered) == variant["settings"]


def test_the_coordinate_search_walks_one_setting_at_a_time_from_the_defaults(sliced, linked_home):
    """``mediarec index``'s search: every point it scores is the defaults with settings changed one
    sweep at a time, it scores fewer points than the grid, and it chooses its best point."""
    grid = {"ease_lambda": (100.0, 500.0, 1000.0), "alpha": (0.5, 1.0), "window": (2, 5), "decay": (0.85, 1.0)}
    full = tune(sliced, grid=grid, write=False)
    walk = tune(sliced, grid=grid, write=False, search="coordinate")
    assert walk["search"] == "coordinate" and len(walk["grid"]) < len(full["grid"])
    scored = {(r["ease_lambda"], r["alpha"], r["window"], r["decay"]): r["ndcg@10"] for r in full["grid"]}
    for r in walk["grid"]:  # the same points score the same in both searches
        assert scored[(r["ease_lambda"], r["alpha"], r["window"], r["decay"])] == pytest.approx(r["ndcg@10"], abs=1e-12)
    assert walk["validation_ndcg@10"] == max(r["ndcg@10"] for r in walk["grid"])
    assert walk["default_validation_ndcg@10"] == full["default_validation_ndcg@10"]
    assert walk["validation_ndcg@10"] <= full["validation_ndcg@10"]


def test_a_grown_catalog_keeps_the_choice_made_for_the_one_it_grew_from(sliced, linked_home):
    """``mediarec add`` carries the stored choice to the catalog it makes (else every add would put
    an automatically tuned catalog back on the defaults); another catalog never gets it."""
    from mediarec.index.tuning import carry_choice

    grid = {"ease_lambda": (100.0, 1000.0), "alpha": (1.0,), "window": (5,), "decay": (1.0,)}
    out = tune(sliced, grid=grid)
    grown = sliced.replace(interactions=sliced.interactions[:-1])  # stands for the catalog after an add
    assert stored_choice(grown) is None
    assert carry_choice(sliced, grown) is True
    assert stored_choice(grown) == out["settings"] and stored_choice(sliced) == out["settings"]
    stranger = sliced.replace(interactions=sliced.interactions[:-2])
    assert carry_choice(stranger, sliced.replace(interactions=sliced.interactions[:-3])) is False
    tuned_path("ml-slice").unlink()
    assert carry_choice(sliced, grown) is False  # nothing stored: nothing carried


@pytest.mark.slow
def test_index_chooses_the_collaborative_settings_itself_and_says_so(ml100k, tmp_path, model_home):
    """A newcomer who never runs `mediarec tune`: `mediarec index` chooses the settings on validation
    users where the catalog has enough of them, says what it chose, and `mediarec add` keeps the
    choice (--no-tune: test_cli.py's index of ML-100k)."""
    from conftest import cli_env, cli_command, make_home
    from mediarec.catalog import write_generic

    small = first_items(ml100k, 150, "tunable", users=250)
    files = tmp_path / "files"
    write_generic(small, files / "items.jsonl", files / "interactions.csv")
    home = make_home(tmp_path / "home", model_home)
    env = cli_env(home)

    def cli(*args):
        p = subprocess.run([*cli_command(), *args], env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        return p.stdout

    out = cli("index", "--catalog", str(files), "--name", "tunable", "--no-learned")
    assert "collaborative settings chosen: tunable: ease_lambda=" in out and "validation NDCG@10" in out, out
    stored = json.loads(tuned_path("tunable", home).read_text())
    assert stored["search"] == "coordinate" and stored["validation_users"] >= 200
    extra = tmp_path / "more.csv"
    extra.write_text("user,item,rating,timestamp\n" + f"{small.interactions[0].user},{small.interactions[5].item},5,"
                     f"{int(max(x.timestamp or 0 for x in small.interactions)) + 60}\n")
    cli("add", "--dataset", "tunable", "--interactions", str(extra), "--quiet")
    assert len(json.loads(tuned_path("tunable", home).read_text())["fingerprints"]) == 4  # carried to the grown one
    again = cli("index", "--dataset", "tunable", "--no-learned")  # the grown catalog: its choice is stored
    assert "collaborative settings: chosen on validation users before" in again and "choosing" not in again


def test_a_catalog_too_small_or_too_large_for_the_automatic_search_says_why(ml100k):
    from mediarec.catalog import load_dataset
    from mediarec.eval import tuning

    assert tuning.auto_tune_skip(load_dataset("demo")) == \
        "46 users with a validation target, fewer than 200 to choose on"
    assert tuning.auto_tune_skip(ml100k) is None
    small_cap = tuning.AUTO_MAX_ITEMS
    try:
        tuning.AUTO_MAX_ITEMS = 1000
        assert tuning.auto_tune_skip(ml100k) == "1,682 items with interactions, more than 1,000 for the automatic grid"
    finally:
        tuning.AUTO_MAX_ITEMS = small_cap
