"""Issue 5's measurement in the harness: `+summaries` and `+profile` retrieval variants beside their
base systems in one run, with a paired test against the base. Real Chroma and the real embedder;
the LLM-profile path with the real SmolLM2-135M.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mediarec.catalog.model import Catalog
from mediarec.cli import main
from mediarec.catalog import load_dataset
from mediarec.catalog.enrich import enrich_path
from mediarec.errors import ConfigError
from mediarec.eval import EvalProtocol, evaluate, leave_last_out, write_report
from mediarec.llm import load_llm
from mediarec.rank.profile import fallback_profile, profile_query
from mediarec.index.retriever import Retriever
from mediarec.eval.systems import IndexProvider, ProfileQueries, parse_retrieval_name, retrieval_system


@pytest.fixture(scope="module")
def home(module_home):
    return module_home


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return load_dataset("demo")


@pytest.fixture(scope="module")
def thin(demo, home) -> Catalog:
    """The demo catalog with only titles and genres (thin, like MovieLens), and its own descriptions
    stored as the `mediarec enrich` summaries."""
    items = [it.model_copy(update={"description": "", "tags": ()}) for it in demo.items.values()]
    cat = Catalog("demo-thin", items, demo.interactions)
    path = enrich_path(cat.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": it.id, "summary": it.description}) + "\n"
                            for it in demo.items.values()), encoding="utf-8")
    return cat


@pytest.fixture(scope="module")
def provider(home) -> IndexProvider:
    return IndexProvider()


def test_parse_retrieval_names():
    assert parse_retrieval_name("hybrid") == ("hybrid", False, None, False)
    assert parse_retrieval_name("text+summaries") == ("text", True, None, False)
    assert parse_retrieval_name("hybrid+summaries+profile@0.5") == ("hybrid", True, 0.5, True)
    assert parse_retrieval_name("pop") is None and parse_retrieval_name("llm") is None
    for bad, says in (("text+magic", "unknown modifier"), ("text+profile@2", "from 0 to 1"),
                      ("text+profile@x", "from 0 to 1"), ("collab+profile", "text side")):
        with pytest.raises(ConfigError, match=says):
            parse_retrieval_name(bad)


def test_profile_pulls_the_text_query_towards_it(demo, provider):
    retriever = Retriever(provider.get(demo))
    history = [x for x in demo.history("alice") if "Horror" not in demo.items[x.item].genres][-5:]
    horror = [j for j, i in enumerate(retriever.index.item_ids) if "Horror" in demo.items[i].genres]
    assert horror, "the demo catalog has horror films"
    plain = retriever.score_all(history, sides=("text",))
    prof = "genres: Horror. tags: horror, scary, haunted house, slasher"
    pulled = retriever.score_all(history, sides=("text",), profile=prof)

    def mean_rank(scores):
        order = np.argsort(-scores, kind="stable")
        ranks = np.empty(len(scores), dtype=int)
        ranks[order] = np.arange(len(scores))
        return ranks[horror].mean()

    assert mean_rank(pulled) < mean_rank(plain) - 10
    # share 0 leaves the query as it was; consumed items stay out either way
    retriever.fusion = retriever.fusion.model_copy(update={"profile_weight": 0.0})
    assert np.array_equal(retriever.score_all(history, sides=("text",), profile=prof), plain)
    seen = [retriever.index.position(x.item) for x in history]
    assert np.all(np.isneginf(pulled[seen]))
    # candidates() takes the same profile (text side alone, so the collaborative side cannot mask it)
    retriever.fusion = retriever.fusion.model_copy(update={"profile_weight": 0.6, "collab_weight": 0.0,
                                                           "text_weight": 1.0})
    top = retriever.candidates(history, k=10, profile=prof)
    assert sum("Horror" in c.item.genres for c in top) > sum(
        "Horror" in c.item.genres for c in retriever.candidates(history, k=10))


def test_variants_are_measured_against_their_base(thin, provider, tmp_path):
    split = leave_last_out(thin)
    names = ["text", "text+summaries", "text+profile", "hybrid", "hybrid+profile@0.5"]
    systems = [retrieval_system(n, provider) for n in names]
    rep = evaluate(thin, systems, EvalProtocol(name="variants", bootstrap=200), split=split, progress=False)
    write_report(rep, tmp_path, "mediarec eval --systems " + ",".join(names))
    data = json.loads((tmp_path / "metrics.json").read_text())["systems"]
    assert list(data) == names
    for n in ("text+summaries", "text+profile", "hybrid+profile@0.5"):
        base = n.split("+")[0]
        assert data[n]["base"] == base
        assert 0 < data[n]["p_vs_base"]["ndcg@10"] <= 1
    assert "base" not in data["text"] and "p_vs_base" not in data["hybrid"]
    # the summaries variant embedded the stored summaries of every thin item, and ranks differently
    assert data["text+summaries"]["extra"]["enriched_items"] == len(thin.items)
    assert not np.array_equal(rep.ranks["text"], rep.ranks["text+summaries"])
    assert not np.array_equal(rep.ranks["text"], rep.ranks["text+profile"])
    ex = data["hybrid+profile@0.5"]["extra"]
    assert ex["profile_weight"] == 0.5 and ex["profile_source"] == "fallback" and ex["profiles_by_llm_rate"] == 0
    assert data["text+profile"]["extra"]["profile_weight"] == pytest.approx(0.3)
    md = (tmp_path / "report.md").read_text()
    assert "## Variants against their base" in md
    row = next(line for line in md.splitlines() if line.startswith("| text+summaries | text |"))
    delta = data["text+summaries"]["ndcg@10"] - data["text"]["ndcg@10"]
    assert f"{delta:+.4f}" in row
    # two index variants under their own prefixes: the plain text side was not rebuilt for the enriched one
    assert {"demo-thin-eval", "demo-thin-eval-enriched"} <= set(provider._cache)


def test_summaries_variant_without_stored_summaries_says_what_to_run(demo, provider):
    system = retrieval_system("text+summaries", provider)
    with pytest.raises(ConfigError, match="mediarec enrich --dataset demo"):
        system.fit(demo)


@pytest.mark.llm
def test_profile_queries_with_a_real_llm(demo, smol_path):
    llm = load_llm(f"local:{smol_path}")
    llm.n_threads = 1
    queries = ProfileQueries(llm)
    pairs = [(demo.items[x.item], x) for x in demo.history("alice")]
    text = queries(pairs)
    assert text.strip()
    ex = queries.extra()
    assert ex["profile_source"] == llm.spec and ex["profiles_by_llm_rate"] in (0.0, 1.0)
    if ex["profiles_by_llm_rate"] == 0.0:  # the 135M model's answer was unusable: the fallback's text
        assert text == profile_query(fallback_profile(pairs))
    assert ex["profile_seconds_per_user"] > 0


def test_cli_eval_with_variants_and_a_bad_name(home, tmp_path, capsys):
    out = tmp_path / "r"
    rc = main(["eval", "--dataset", "demo", "--systems", "text,text+profile", "--users", "10", "--quiet",
               "--output", str(out)])
    assert rc == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["systems"]["text+profile"]["base"] == "text"
    capsys.readouterr()
    rc = main(["eval", "--dataset", "demo", "--systems", "text+sparkle", "--quiet", "--output", str(out)])
    err = capsys.readouterr().err
    assert rc != 0 and "unknown modifier 'sparkle'" in err and "Traceback" not in err


def test_eval_index_build_takes_the_build_lock(demo, home, caplog):
    """Two evaluations of one catalog take turns on its evaluation index, like `mediarec index`."""
    import logging
    import threading

    from mediarec.config import get_settings
    from mediarec.index.store import build_lock

    provider = IndexProvider()
    done = threading.Event()
    caplog.set_level(logging.WARNING, logger="mediarec.index.store")
    with build_lock(get_settings(), "demo-eval"):
        t = threading.Thread(target=lambda: (provider.get(demo), done.set()), daemon=True)
        t.start()
        t.join(1.5)
        assert not done.is_set()  # blocked on the lock we hold
    t.join(300)
    assert done.is_set()
    assert any("building the index of demo-eval; waiting" in r.getMessage() for r in caplog.records)
