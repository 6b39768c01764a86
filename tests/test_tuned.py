"""Product defaults from measurement: the LLM weight `mediarec eval` chose on validation users is what
`recommend` uses for that catalog and model, and the result says where each setting came from.
Real Chroma, real embedder, the real SmolLM2-135M."""

from __future__ import annotations

import json

import pytest

from mediarec.catalog import load_dataset
from mediarec.cli import main
from mediarec.eval.run import WEIGHTS
from mediarec.rank.tuned import llm_weight_path, store_llm_weight, stored_llm_weight
from mediarec.app import from_catalog


@pytest.fixture(scope="module")
def demo(module_home):
    return load_dataset("demo")


def test_a_stored_weight_serves_its_catalog_and_model_only(demo, linked_home):
    assert stored_llm_weight(demo, "local:a") is None
    path = store_llm_weight(demo, [demo.fingerprint()], "local:a", 0.25, {0.0: 0.1, 0.25: 0.2}, 7)
    assert path == llm_weight_path("demo") and path.is_file()
    assert stored_llm_weight(demo, "local:a") == (0.25, path)
    assert stored_llm_weight(demo, "local:b") is None  # another model
    other = demo.replace(interactions=demo.interactions[1:])
    assert stored_llm_weight(other, "local:a") is None  # another catalog (or a changed one)
    store_llm_weight(demo, [demo.fingerprint()], "local:b", 1.0, {1.0: 0.3}, 7)
    assert stored_llm_weight(demo, "local:a")[0] == 0.25 and stored_llm_weight(demo, "local:b")[0] == 1.0
    path.write_text("{not json")
    assert stored_llm_weight(demo, "local:a") is None  # unreadable: the default serves


@pytest.mark.llm
def test_recommend_uses_the_stored_weight_and_says_so(demo, linked_home, smol_path):
    spec = f"local:{smol_path}"
    plain = from_catalog(demo, llm=spec)
    assert plain.reranker.settings.llm_weight == 0.5
    r = plain.recommend(user="alice", k=3, explain=False)
    assert r.settings["llm"]["source"].startswith("default") and r.settings["llm"]["llm_weight"] == 0.5
    assert r.settings["collab"]["source"] == "defaults" and r.settings["n_candidates"] == 20
    assert set(r.settings["collab"]) >= {"ease_lambda", "alpha", "window", "decay"}

    store_llm_weight(demo, [demo.fingerprint()], plain.llm.spec, 0.0, {0.0: 0.3, 0.5: 0.2}, 10)
    tuned = from_catalog(demo, llm=spec)
    assert tuned.reranker.settings.llm_weight == 0.0
    r = tuned.recommend(user="alice", k=3, explain=False)
    assert r.settings["llm"]["llm_weight"] == 0.0 and "validation" in r.settings["llm"]["source"]
    assert [i.item.id for i in r.items] == [c.item.id for c in r.candidates[:3]]  # weight 0: retrieval order
    none = from_catalog(demo, llm="none").recommend(user="alice", k=3)
    assert "llm" not in none.settings and none.settings["collab"]["source"] == "defaults"


@pytest.mark.llm
def test_eval_stores_the_weight_it_chose(linked_home, smol_path, tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["eval", "--dataset", "demo", "--systems", "hybrid,llm", "--llm", f"local:{smol_path}",
               "--users", "3", "--val-users", "3", "--candidates", "5", "--quiet", "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    chosen = json.loads((out / "metrics.json").read_text())["systems"]["llm"]["extra"]["tuned_llm_weight"]
    stored = json.loads(llm_weight_path("demo").read_text())["models"]
    ((spec, entry),) = stored.items()
    assert entry["llm_weight"] == chosen and chosen in WEIGHTS and entry["validation_users"] == 3
    assert sorted(map(float, entry["validation_ndcg@10_by_weight"])) == list(WEIGHTS)
    demo = load_dataset("demo")
    assert stored_llm_weight(demo, spec)[0] == chosen  # what recommend will use for this catalog


@pytest.mark.llm
def test_eval_tunes_learned_llm_and_stores_its_weight_for_the_product(linked_home, smol_path, tmp_path, capsys):
    """learned+llm gets its own weight on validation users; the product (learned stage, then the
    LLM) uses that one, not llm's."""
    out = tmp_path / "r"
    rc = main(["eval", "--dataset", "demo", "--systems", "hybrid,learned,llm,learned+llm", "--llm",
               f"local:{smol_path}", "--users", "3", "--val-users", "3", "--candidates", "5", "--quiet",
               "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    systems = json.loads((out / "metrics.json").read_text())["systems"]
    assert {"learned", "learned+llm", "llm"} <= set(systems)
    chosen = systems["learned+llm"]["extra"]["tuned_llm_weight"]
    assert systems["learned+llm"]["base"] == "learned" and "p_vs_base" in systems["learned+llm"]
    assert "second_stage" in systems["learned"]["extra"]
    ((spec, entry),) = json.loads(llm_weight_path("demo").read_text())["models"].items()
    assert entry["llm_weight"] == chosen
    assert sorted(map(float, entry["validation_ndcg@10_by_weight"])) == list(WEIGHTS)


def test_history_cut_choice_by_hand():
    from mediarec.eval.llm_systems import choose

    scored = {(0.0, 5): 0.100, (0.5, 5): 0.120, (1.0, 5): 0.118,
              (0.0, 20): 0.100, (0.5, 20): 0.110, (1.0, 20): 0.124}
    assert choose(scored) == (0.5, 5)  # 0.120 is within 0.005 of the best 0.124: the shorter history
    scored[(1.0, 20)] = 0.130
    assert choose(scored) == (1.0, 20)  # a clear win for the longer history
    assert choose({(0.25, 10): 0.2, (0.75, 10): 0.2}) == (0.25, 10)  # a tie in weight: nearest 0.5 (both)
    assert choose({(0.0, 10): 0.2, (0.5, 10): 0.2}) == (0.5, 10)


@pytest.mark.llm
def test_eval_tunes_the_history_cut_and_recommend_uses_it(linked_home, smol_path, tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["eval", "--dataset", "demo", "--systems", "hybrid,llm", "--llm", f"local:{smol_path}",
               "--users", "3", "--val-users", "3", "--candidates", "5", "--history-cuts", "2,8", "--quiet",
               "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    systems = json.loads((out / "metrics.json").read_text())["systems"]
    extra = systems["llm"]["extra"]
    cut = extra["history_cut"]
    assert cut in (2, 8) and extra["history_cuts"]["chosen"] == cut
    assert set(extra["history_cuts"]["validation_ndcg@10"]) == {f"{w}@h{h}" for w in WEIGHTS for h in (2, 8)}
    tokens = {int(h): n for h, n in extra["history_cuts"]["prompt_tokens_per_user"].items()}
    assert tokens[2] < tokens[8]  # fewer history items, fewer prompt tokens
    other = 8 if cut == 2 else 2
    assert systems[f"llm@{extra['tuned_llm_weight']}@h{other}"]["extra"]["history_cut"] == other  # paired on test
    entry = next(iter(json.loads(llm_weight_path("demo").read_text())["models"].values()))
    assert entry["history"] == cut
    r = from_catalog(load_dataset("demo"), llm=f"local:{smol_path}").recommend(user="alice", k=3,
                                                                                           explain=False)
    assert r.settings["llm"]["history_cut"] == cut and "validation" in r.settings["llm"]["history_cut_source"]
    assert main(["eval", "--dataset", "demo", "--systems", "llm", "--llm", f"local:{smol_path}",
                 "--history-cuts", "five", "--quiet", "--output", str(out)]) != 0
