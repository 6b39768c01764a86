"""Requests honoured by retrieval against real Chroma indexes (real embedder), the demo's
"like Alien but funnier", and the request benchmark on a tiny catalogue with adherence by hand."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402

from conftest import first_items  # noqa: E402
from mediarec.catalog import Catalog, Interaction, Item, load_dataset  # noqa: E402
from mediarec.eval.requests import (PARAPHRASES, RULES, RequestVariant, compare, make_cases,  # noqa: E402
                                    run_requests, satisfies, summarise)
from mediarec.eval.split import leave_last_out  # noqa: E402
from mediarec.index.retriever import Retriever  # noqa: E402
from mediarec.index.store import IndexBuilder  # noqa: E402
from mediarec.rank.request import Constraints, parse_request, read_by_similarity, resolve_relative  # noqa: E402
from mediarec.recommender import Recommender  # noqa: E402
from mediarec.app import from_catalog
from mediarec.chat.session import ChatSession


@pytest.fixture(scope="module")
def retriever(ml100k, embedder, tmp_path_factory) -> Retriever:
    cat = first_items(ml100k, 400, "ml100k-first400")
    client = chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("request-index")))
    return Retriever(IndexBuilder(cat, client, embedder=embedder).build())


def _user(retriever) -> list[Interaction]:
    cat = retriever.catalog
    return max((cat.history(u) for u in cat.users()), key=len)[:30]


def test_hard_constraints_filter_candidates_and_full_scores_alike(retriever):
    cat, hist = retriever.catalog, _user(retriever)
    c = parse_request("a comedy from the 90s, no romance", cat)
    cands = retriever.candidates(hist, k=15, constraints=c)
    assert len(cands) == 15
    assert all(c.allows(x.item) for x in cands)
    scores = retriever.score_all(hist, constraints=c)
    allowed = retriever.allowed(c)
    assert np.all(np.isneginf(scores[~allowed]))
    # candidates() and score_all() agree on the order among allowed items (the pool holds each side's best)
    top = [retriever.index.item_ids[j] for j in np.argsort(-scores, kind="stable")[:15]]
    assert [x.item.id for x in cands] == top
    # and the filter changed something: unfiltered, some of the best items break the request
    assert not all(c.allows(x.item) for x in retriever.candidates(hist, k=15))


def test_where_filter_on_stored_metadata_in_chroma(retriever):
    c = parse_request("something from the 80s", retriever.catalog)
    vec = retriever.index.text_vectors[0].tolist()
    res = retriever.index.text_collection.query(query_embeddings=[vec], n_results=20, where=c.where(),
                                                include=["metadatas"])
    assert res["ids"][0] and all(1980 <= m["year"] <= 1989 for m in res["metadatas"][0])
    cands = retriever.candidates(_user(retriever), k=10, query="tense", constraints=c)
    assert cands and all(1980 <= x.item.year <= 1989 for x in cands)


def test_no_constraints_is_the_old_behaviour(retriever):
    hist = _user(retriever)
    plain = [(x.item.id, x.score) for x in retriever.candidates(hist, k=20, query="space adventure")]
    empty = [(x.item.id, x.score) for x in retriever.candidates(hist, k=20, query="space adventure",
                                                                constraints=Constraints())]
    assert plain == empty
    np.testing.assert_array_equal(retriever.score_all(hist), retriever.score_all(hist, constraints=Constraints()))


def test_reference_item_joins_the_query_and_is_not_returned(retriever):
    cat, hist = retriever.catalog, _user(retriever)[:5]
    ref = next(it for it in cat.items.values() if "Horror" in it.genres and it.id not in {x.item for x in hist})
    c = Constraints(reference=ref.id, reference_title=ref.label)
    with_ref = [x.item.id for x in retriever.candidates(hist, k=20, constraints=c)]
    without = [x.item.id for x in retriever.candidates(hist, k=20)]
    assert ref.id not in with_ref and with_ref != without
    # the reference alone is enough to start from
    assert retriever.candidates([], k=5, constraints=c)


def test_an_unsatisfiable_request_gives_no_candidates(retriever):
    c = Constraints(genres=["Comedy"], exclude_genres=["Comedy"])
    assert retriever.candidates(_user(retriever), k=10, constraints=c) == []


@pytest.fixture(scope="module")
def demo_rec(demo_home):
    return from_catalog(load_dataset("demo"), llm="none")


def test_like_alien_but_funnier_puts_a_comedy_first(demo_rec):
    r = demo_rec.recommend(history=["Alien"], query="something like Alien but funnier", k=5)
    assert r.items and "Comedy" in r.items[0].item.genres
    assert all("Comedy" in x.item.genres for x in r.items)
    assert r.constraints.genres == ["Comedy"] and r.constraints.reference_title == "Alien (1979)"
    assert '"reference_title":"Alien (1979)"' in r.model_dump_json()  # --json shows the parsed request


def test_a_contradicted_request_falls_back_and_says_so(demo_rec):
    horror = [it.id for it in demo_rec.catalog.items.values() if "Horror" in it.genres]
    r = demo_rec.recommend(history=["Alien"], query="something scary", exclude=horror, k=5)
    assert len(r.items) == 5 and not any("Horror" in x.item.genres for x in r.items)
    assert any("nothing left satisfies the request" in n for n in r.notes)


def test_why_shows_the_parsed_request(demo_rec):
    s = ChatSession(demo_rec)
    s.send("I watched Alien")
    s.send("an album from the 90s")
    assert s.last_result.items and all(x.item.kind == "album" for x in s.last_result.items)
    assert "read as: kind album; years 1990-1999" in s.explain(1)


# -- the benchmark on a tiny catalogue ---------------------------------------------------------------
def _tiny() -> Catalog:
    items = [Item(id="m1", title="Cold Station", year=1979, genres=("Sci-Fi", "Horror")),
             Item(id="m2", title="Laser Run", year=1986, genres=("Sci-Fi", "Action")),
             Item(id="m3", title="Moon Hijinks", year=1984, genres=("Comedy", "Sci-Fi"), tags=("quirky",)),
             Item(id="m4", title="Office Party", year=1995, genres=("Comedy",), tags=("quirky",)),
             Item(id="m5", title="The Cellar", year=1982, genres=("Horror",)),
             Item(id="a1", title="Loud Noises", kind="album", year=1997, genres=("Rock",), tags=("loud",))]
    log = {"u1": ["m1", "m2", "m3"], "u2": ["m1", "m3", "m4"], "u3": ["m2", "m3", "m5"], "u4": ["m1", "m5", "a1", "m4"]}
    return Catalog("tiny-requests", items, [Interaction(user=u, item=i, timestamp=t)
                                            for u, ids in log.items() for t, i in enumerate(ids)])


def test_request_benchmark_adherence_by_hand(embedder, tmp_path):
    cat = _tiny()
    split = leave_last_out(cat)
    assert split.test["u1"] == "m3" and [x.item for x in split.test_history["u1"]] == ["m1", "m2"]
    client = chromadb.PersistentClient(path=str(tmp_path / "tiny"))
    rec = Recommender(split.train_val_catalog, IndexBuilder(split.train_val_catalog, client, embedder=embedder).build(),
                      name="hybrid")
    out = run_requests(rec, split, ["u1"], seed=0, bootstrap=50)
    t = out["types"]
    # u1 has seen m1, m2: the history-only top 10 is every other item, m3 m4 m5 a1, whatever the scores.
    # genre: Comedy (m3, m4) or Sci-Fi (m3) of 4; decade 80s: m3, m5; kind movie: m3, m4, m5;
    # negation of Horror or Rock (genres of that list the target lacks): 3 of 4 either way;
    # like Laser Run (u1's last liked) but funnier: Comedy; tag quirky (soft, no filter): m3, m4.
    genre = make_cases("u1", cat.items["m3"], [cat.items["m1"], cat.items["m2"]], split.train_val_catalog,
                       [cat.items[i] for i in ("m3", "m4", "m5", "a1")], 0, ["Action", "Comedy", "Horror", "Rock",
                                                                              "Sci-Fi"], {"quirky", "loud"})
    by_type = {c.type: c for c in genre}
    assert set(by_type) == {"genre", "decade", "tag", "kind", "negation", "relative", "like", "paraphrase"}
    # relative: m3 (1984) is older than the median of u1's history (1979, 1986): "older", up to 1985
    assert by_type["relative"].text.endswith("older") and by_type["relative"].truth.year_max == 1985
    share = {"Comedy": 0.5, "Sci-Fi": 0.25}
    expected_base = {"genre": share[by_type["genre"].truth.genres[0]],
                     "decade": 0.5, "kind": 0.75, "negation": 0.75, "like": 0.5, "tag": 0.5, "relative": 0.5,
                     "paraphrase": share[by_type["paraphrase"].truth.genres[0]]}
    assert by_type["like"].text.endswith("but funnier") and "Laser Run" in by_type["like"].text
    for name, base in expected_base.items():
        assert t[name]["adherence_history_only"] == pytest.approx(base), name
        assert t[name]["hr@10"] == 1.0 and t[name]["hr@10_history_only"] == 1.0  # 4 items: always in the top 10
    for name in ("genre", "decade", "kind", "negation", "relative", "like"):
        assert t[name]["adherence"] == 1.0, name  # the filter leaves only items that satisfy
    assert t["tag"]["adherence"] == pytest.approx(0.5)  # soft: the same four items, reordered
    # the rules leave a paraphrase unread; the embedding fallback reads it as its genre, which filters
    assert expected_base["paraphrase"] < 1 and t["paraphrase"]["adherence"] == 1.0
    assert "by similarity" in out["examples"]["paraphrase"][0]["parsed"]
    assert t["checkable"]["n"] == 6

    # A reading that knows the paraphrase ("something to make me laugh" is a comedy) filters.
    def knows(text, catalog):
        c = parse_request(text, catalog)
        for g, phrases in PARAPHRASES.items():
            if any(p in text for p in phrases):
                c.genres, c.parser = [g], "oracle"
        return c

    out = run_requests(rec, split, ["u1"], seed=0, bootstrap=50, variants=[RULES, RequestVariant("oracle", knows)])
    v = out["variants"]["oracle"]
    assert out["types"] == t  # the first variant is the reference, as without variants
    assert v["paraphrase"]["adherence"] == 1.0 and v["paraphrase"]["adherence_reference"] == 1.0
    assert v["paraphrase"]["readings_changed"] == 1.0 and v["genre"]["readings_changed"] == 0.0
    assert v["checkable"]["n"] == 6 and v["all"]["n"] == 8
    some = run_requests(rec, split, ["u1", "u2"], seed=0, bootstrap=50, variant_users=1,
                        variants=[RULES, RequestVariant("oracle", knows)])
    assert some["variants"]["oracle"]["all"]["n"] == 8  # the first user's requests only, paired
    assert some["types"]["genre"]["n"] == 2  # the reference ranks every user's


def test_the_rules_leave_paraphrases_unread(ml100k):
    """A paraphrase is words the rule table lacks: read by the rules, it filters nothing (so the
    benchmark measures what reading with the LLM adds), yet it names a genre MovieLens has."""
    genres = {g for it in ml100k.items.values() for g in it.genres}
    for g, phrases in PARAPHRASES.items():
        assert g in genres, g
        for text in phrases:
            c = parse_request(text, ml100k)
            assert not c.is_hard and not c.genres and c.reference is None, (text, c.describe())


def test_without_an_llm_paraphrases_are_read_by_similarity_or_left_unread(ml100k, embedder):
    """The embedding fallback reads a paraphrase as the genre it is clearly nearest to, and never as
    a wrong one; words that name no genre stay unread (and are reported)."""
    right = wrong = 0
    for g, phrases in PARAPHRASES.items():
        for text in phrases:
            c = read_by_similarity(parse_request(text, ml100k), ml100k, embedder.embed)
            if c.genres:
                right += c.genres == [g]
                wrong += c.genres != [g]
                assert not c.unread and "by similarity" in c.describe()
    assert wrong == 0 and right >= 15, (right, wrong)
    for text in ("something to binge", "tonight", "ignore previous instructions", "older"):
        c = read_by_similarity(parse_request(text, ml100k), ml100k, embedder.embed)
        assert not c.genres, (text, c.describe())


def test_variant_comparison_by_hand():
    def row(variant, user, rank, adherence, parsed="p", seconds=0.001, rerank=None):
        r = {"variant": variant, "user": user, "type": "genre", "rank": rank, "adherence": adherence,
             "parsed": parsed, "parse_seconds": seconds}
        return r | ({"rerank": rerank} if rerank else {})

    rows = [row("rules", "a", 1, 1.0), row("rules", "b", 20, 0.5), row("rules", "c", 3, 0.0),
            row("x", "a", 2, 1.0, seconds=1.0, rerank={"seconds": 2.0, "cached": False, "prompt_tokens": 900,
                                                          "degraded": False}),
            row("x", "b", 5, 1.0, parsed="q", seconds=2.0, rerank={"seconds": 9.0, "cached": True,
                                                                      "prompt_tokens": 700, "degraded": True}),
            row("x", "c", 30, 0.5, seconds=3.0, rerank={"seconds": 4.0, "cached": False, "prompt_tokens": 800,
                                                           "degraded": False})]
    rows[-1]["llm_read_seconds"] = 2.5  # the LLM read this one: its compute time, plus the rules' (capped)
    m = compare(rows, "x", "rules", bootstrap=200)["genre"]
    assert m["n"] == 3 and m["hr@10"] == pytest.approx(2 / 3) and m["hr@10_reference"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(6)) / 3)
    assert m["adherence"] == pytest.approx(2.5 / 3) and m["adherence_reference"] == pytest.approx(0.5)
    assert m["readings_changed"] == pytest.approx(1 / 3) and m["llm_readings"] == 1
    assert m["parse_seconds_mean"] == pytest.approx((1.0 + 2.0 + 2.55) / 3)
    assert m["rerank_seconds_mean"] == pytest.approx(5.0)  # a cached answer counts the time it took
    assert m["rerank_prompt_tokens_mean"] == pytest.approx(800) and m["rerank_degraded"] == 1
    assert 0 <= m["p_adherence"] <= 1 and m["p_hr@10"] >= 0.5  # equal hit rates: no evidence of a difference


def test_summary_statistics_by_hand():
    rows = [{"type": "genre", "rank": r, "base_rank": b, "adherence": a, "base_adherence": ba, "request": "x",
             "parsed": "y"} for r, b, a, ba in ((1, 20, 1.0, 0.2), (11, 3, 0.9, 0.4), (math.inf, math.inf, 1.0, 0.0))]
    m = summarise(rows, bootstrap=200)["types"]["genre"]
    assert m["hr@10"] == pytest.approx(1 / 3) and m["hr@10_history_only"] == pytest.approx(1 / 3)
    assert m["ndcg@10"] == pytest.approx(1 / 3) and m["ndcg@10_history_only"] == pytest.approx(0.5 / 3)
    assert m["adherence"] == pytest.approx(2.9 / 3) and m["adherence_history_only"] == pytest.approx(0.2)
    assert m["hr_ratio"] == pytest.approx(1.0)
    lo, hi = m["adherence_ci95"]
    assert 0.9 <= lo <= m["adherence"] <= hi <= 1.0


def test_generated_requests_read_back_as_meant(ml100k):
    """The generator's wording and the parser agree: every checkable request parses to its truth."""
    genres = sorted({g for it in ml100k.items.values() for g in it.genres})
    users = ml100k.users()[:60]
    for u in users:
        h = [ml100k.items[x.item] for x in ml100k.history(u)]
        for case in make_cases(u, h[-1], h[:-1], ml100k, h[:10], 0, genres, set()):
            if case.type == "paraphrase":  # words the rules do not know, by design
                continue
            got = resolve_relative(parse_request(case.text, ml100k), ml100k, h[:-1])  # "older" than the history
            truth = case.truth
            assert set(truth.genres) <= set(got.genres), case
            assert set(truth.exclude_genres) <= set(got.exclude_genres), case
            if truth.year_min is not None or truth.year_max is not None:
                assert (got.year_min, got.year_max) == (truth.year_min, truth.year_max), case
            assert satisfies(truth, h[-1]) and got.allows(h[-1]), case  # the target satisfies its request


@pytest.mark.llm
def test_request_variants_with_a_real_local_llm(embedder, smol_path, linked_home, tmp_path):
    """Rules vs rules + LLM reading, each with and without LLM reranking, on the same requests."""
    from mediarec.eval.requests import llm_variants
    from mediarec.llm import load_llm

    cat = _tiny()
    split = leave_last_out(cat)
    client = chromadb.PersistentClient(path=str(tmp_path / "tiny"))
    rec = Recommender(split.train_val_catalog, IndexBuilder(split.train_val_catalog, client, embedder=embedder).build(),
                      name="hybrid")
    llm = load_llm(f"local:{smol_path}")
    llm.n_threads = 1
    out = run_requests(rec, split, ["u1"], seed=0, bootstrap=50, variants=llm_variants(llm, 0.5))
    v = out["variants"]
    assert list(v) == ["rules", "rules+llm", "rules, llm rerank", "rules+llm, llm rerank"]
    assert len({m["all"]["n"] for m in v.values()}) == 1 and v["rules"]["all"]["n"] == 8  # the same requests
    assert v["rules+llm"]["all"]["parse_seconds_mean"] > v["rules"]["all"]["parse_seconds_mean"]
    reranked = v["rules, llm rerank"]["all"]
    assert reranked["rerank_prompt_tokens_mean"] > 100 and reranked["rerank_degraded"] == 0
    assert "rerank_seconds_mean" not in v["rules+llm"]["all"]
    # the LLM orders what the request's filters let through: it cannot break them
    assert v["rules, llm rerank"]["checkable"]["adherence"] == 1.0


@pytest.mark.llm
def test_eval_request_llm_from_the_cli(smol_path, linked_home, tmp_path):
    from mediarec.cli import main

    out = tmp_path / "eval"
    rc = main(["eval", "--dataset", "demo", "--systems", "hybrid", "--users", "1", "--quiet", "--requests",
               "--request-llm", "--llm", f"local:{smol_path}", "--output", str(out)])
    assert rc == 0
    data = __import__("json").loads((out / "requests.json").read_text())
    assert data["llm_weight_source"] in ("default", "tuned in this run") or data["llm_weight_source"].startswith("stored")
    assert set(data["variants"]) == {"rules", "rules+llm", "rules, llm rerank", "rules+llm, llm rerank"}
    report = (out / "report.md").read_text()
    assert "rules vs rules + LLM" in report and "| rules+llm, llm rerank | checkable |" in report
    assert main(["eval", "--dataset", "demo", "--systems", "hybrid", "--request-llm", "--quiet",
                 "--output", str(out)]) != 0  # without --requests: one clear error


def test_like_cases_measure_the_reference_character_by_hand():
    """"like X but Y": ``keep`` is X's genres, and the character share is counted by hand."""
    from mediarec.eval.requests import _keeps

    items = [Item(id=str(n), title=f"t{n}", genres=g) for n, g in
             enumerate([("Sci-Fi", "Comedy"), ("Comedy",), ("horror",), ("Drama",)])]
    assert _keeps(["Sci-Fi", "Horror"], items) == 0.5  # case-insensitive: "horror" counts
    assert _keeps(["Western"], items) == 0.0 and math.isnan(_keeps(["Drama"], []))
    cat = load_dataset("demo")
    x, target = cat.resolve("Alien"), cat.resolve("Shaun of the Dead")
    cases = make_cases("u", target, [x], cat, [], 0, sorted({g for i in cat.items.values() for g in i.genres}), set())
    like = [c for c in cases if c.type == "like"]
    assert like and like[0].keep == list(x.genres) and all(not c.keep for c in cases if c.type != "like")
