"""One pipeline: what `mediarec eval` scores is the product's `Recommender`, so for the same user,
split and settings the harness's top 10 is exactly what `recommend` returns.

Real Chroma, the real embedder, the real SmolLM2-135M through llama.cpp for the LLM stage.
"""

from __future__ import annotations

import numpy as np
import pytest

from mediarec.catalog import load_dataset
from mediarec.eval import EvalProtocol, evaluate, leave_last_out
from mediarec.eval.systems import IndexProvider, build_systems, llm_system
from mediarec.llm import load_llm
from mediarec.recommender import Recommender
from mediarec.app import from_catalog

USERS = 12


@pytest.fixture(scope="module")
def demo(module_home):
    return load_dataset("demo")


@pytest.fixture(scope="module")
def split(demo):
    return leave_last_out(demo)


@pytest.fixture(scope="module")
def provider(module_home):
    return IndexProvider()


def _users_without_repeats(report, split):
    """Users whose test target is not also earlier in their history (eval keeps a repeated target
    rankable, recommend never re-recommends a consumed item: the one place the two differ by design)."""
    targets = split.targets("test")
    return [(j, u) for j, u in enumerate(report.users)
            if targets[u] not in {x.item for x in split.test_history[u]}]


@pytest.mark.parametrize("name", ["hybrid", "text", "collab", "learned"])
def test_eval_top10_is_what_recommend_returns(name, demo, split, provider):
    system = build_systems([name], provider)[0]
    assert isinstance(system, Recommender)  # a configuration of the product, not a second ranker
    report = evaluate(demo, [system], EvalProtocol(name="pipeline", users=USERS, ks=(10,), bootstrap=0),
                      split=split, progress=False)
    # The product, built the way users build it: its own index of the same training catalog.
    train = split.fit_catalog("test")
    # The learned stage is read back from where the evaluation stored it (same catalog, same home).
    product = from_catalog(train, llm="none", fusion=system.fusion, second_stage=system.second_stage)
    assert (product.stage is None) == (name != "learned")
    checked = 0
    for j, u in _users_without_repeats(report, split):
        got = [r.item.id for r in product.recommend(history=split.test_history[u], k=10).items]
        assert got == report.top[name][j], (name, u)
        checked += 1
    assert checked >= USERS // 2


@pytest.mark.llm
def test_eval_and_recommend_agree_with_the_llm_stage(demo, split, provider, smol_path):
    llm = load_llm(f"local:{smol_path}")
    llm.n_threads = 1
    system = llm_system(llm, provider, n_candidates=8, llm_weight=1.0)
    report = evaluate(demo, [system], EvalProtocol(name="pipeline-llm", users=3, ks=(10,), bootstrap=0),
                      split=split, progress=False)
    assert system.extra["users"] == 3 and system.extra["mode"] == "score"
    train = split.fit_catalog("test")
    product = Recommender(train, provider.get(train), llm, rerank=system.reranker.settings, n_candidates=8)
    for j, u in _users_without_repeats(report, split):
        result = product.recommend(history=split.test_history[u], k=8, explain=False)
        assert result.stages == ["retrieval", "llm-score"] and not result.degraded
        assert [r.item.id for r in result.items] == report.top["llm"][j][:8], u
    # The LLM's order is the pool's order in the harness too: the pool sits above every other item.
    hist = split.test_history[report.users[0]]
    scores = system.score_array(hist)
    pool = np.argsort(-scores, kind="stable")[:8]
    assert scores[pool].min() > np.max(np.delete(scores, pool)[np.isfinite(np.delete(scores, pool))])


@pytest.mark.llm
def test_sampled_candidates_are_what_the_llm_ranks(demo, split, provider, smol_path):
    """With a candidate list (the sampled protocol) the LLM ranks those candidates, not its own top."""
    llm = load_llm(f"local:{smol_path}")
    llm.n_threads = 1
    system = llm_system(llm, provider, n_candidates=20, llm_weight=1.0)
    system.fit(split.fit_catalog("test"))
    u = next(iter(split.test))
    cands = [i for i in list(demo.items)[-15:] if i not in split.seen[u]]
    scores = system.score(split.test_history[u], cands)
    assert set(scores) == set(cands)
    pool, order = system.stats.calls[-1]
    assert set(pool) == set(cands)  # the prompt held exactly the candidates
    assert sorted(cands, key=lambda i: -scores[i]) == order
