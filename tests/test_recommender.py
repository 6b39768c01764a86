"""The recommender end to end: catalog -> Chroma index -> candidates -> prompt -> real LLM -> result.

Uses the bundled demo catalog when it is installed and holds the titles below, else a slice of
MovieLens 100k (the most-rated films plus the history titles). The LLM is the real SmolLM2-135M
through llama.cpp; MEDIAREC_HOME is a temporary folder whose models/ points at the shared model
cache, so the index and the answer cache are built fresh.
"""

from __future__ import annotations

import re
import socket
from collections import Counter

import pytest

from mediarec.recommender import RecommendationResult, Recommender
from mediarec.catalog.model import Catalog
from mediarec.config import get_settings
from mediarec.catalog import load_dataset
from mediarec.errors import CatalogError, MediarecError, UnknownItemError, UnknownUserError
from mediarec.llm import LLMOptions, LocalLLM, OpenAILLM
from mediarec.llm.weights import resolve
from conftest import capturing_llm
from mediarec.app import from_catalog

HISTORY = ["Alien (1979)", "Blade Runner (1982)"]
SLICE_ITEMS = 300


def _demo() -> Catalog | None:
    try:
        cat = load_dataset("demo")
        for t in HISTORY:
            cat.resolve(t)
    except (CatalogError, UnknownItemError):
        return None
    return cat if cat.interactions else None


def _ml100k_slice(shared_data) -> Catalog:
    full = load_dataset("ml-100k", shared_data)
    counts = Counter(x.item for x in full.interactions)
    keep = {i for i, _ in counts.most_common(SLICE_ITEMS)} | {full.resolve(t).id for t in HISTORY}
    items = [it for it in full.items.values() if it.id in keep]
    return Catalog("ml100k-slice", items, [x for x in full.interactions if x.item in keep])


@pytest.fixture(scope="module")
def home(demo_home):
    return demo_home  # the demo already indexed


@pytest.fixture(scope="module")
def catalog(shared_data) -> Catalog:
    return _demo() or _ml100k_slice(shared_data)


@pytest.fixture(scope="module")
def smol_path(home) -> str:
    return str(resolve("smollm2-135m", get_settings())["model"])


@pytest.fixture(scope="module")
def plain(home, catalog) -> Recommender:
    """Retrieval only, no learned stage (also builds the index the other recommenders reuse)."""
    return from_catalog(catalog, llm="none", second_stage=None)


@pytest.fixture(scope="module")
def rec(home, catalog, plain, smol_path) -> Recommender:
    r = from_catalog(catalog, llm=f"local:{smol_path}", second_stage=None)  # the LLM over the fusion
    assert isinstance(r.llm, LocalLLM)
    # The test machine's cores are shared: one llama.cpp thread (the model loads on first use),
    # since oversubscribed threads spin and make each prompt many times slower.
    r.llm.n_threads = 1
    return r


@pytest.fixture(scope="module")
def result(rec) -> RecommendationResult:
    return rec.recommend(history=HISTORY, k=5)


@pytest.mark.llm
def test_recommend_with_local_llm(rec, result, catalog, home):
    hist_ids = {catalog.resolve(t).id for t in HISTORY}
    assert len(result.items) == 5
    assert [r.rank for r in result.items] == [1, 2, 3, 4, 5]
    assert not {r.item.id for r in result.items} & hist_ids
    assert len({r.item.id for r in result.items}) == 5
    assert "retrieval" in result.stages and "llm-score" in result.stages
    assert result.mode == "score" and result.llm == rec.llm.spec and result.llm.startswith("local:")
    assert not result.degraded, result.degraded_reason
    assert result.seconds["retrieval"] > 0 and result.seconds["llm"] > 0
    if "explain" in result.stages:
        assert "explain" in result.seconds
    assert result.usage.prompt_tokens > 0 or result.usage.cached
    # Scores: the fused score orders the list; each item carries both sides.
    scores = [r.score for r in result.items]
    assert scores == sorted(scores, reverse=True)
    assert all(r.llm_score is not None and 0 <= r.llm_score <= 1 for r in result.items)
    cand_ids = [c.item.id for c in result.candidates]
    assert {r.item.id for r in result.items} <= set(cand_ids) and not set(cand_ids) & hist_ids
    assert all(r.retrieval_score == next(c.score for c in result.candidates if c.item.id == r.item.id)
               for r in result.items)
    # Explanations for the top items, or a note saying why there are none.
    assert any(r.reason for r in result.items[:5]) or any("explanations unavailable" in n for n in result.notes)
    # The answers went to the cache under this MEDIAREC_HOME.
    assert any((home / "cache" / "llm").rglob("*.json"))


@pytest.mark.llm
def test_second_call_is_served_from_the_cache(rec, result):
    again = rec.recommend(history=HISTORY, k=5)
    assert [r.item.id for r in again.items] == [r.item.id for r in result.items]
    assert again.usage.cached


def test_retrieval_only(plain, catalog):
    res = plain.recommend(history=HISTORY, k=5)
    assert res.stages == ["retrieval"] and res.llm is None and res.mode is None
    assert [r.rank for r in res.items] == [1, 2, 3, 4, 5]
    assert [r.item.id for r in res.items] == [c.item.id for c in res.candidates[:5]]
    # no LLM: every item still has a reason, written from the models' evidence (issue 13)
    assert all(r.llm_score is None and r.reason and r.reason_source == "template" for r in res.items)
    hist_ids = {catalog.resolve(t).id for t in HISTORY}
    assert not {r.item.id for r in res.items} & hist_ids


@pytest.mark.llm
def test_json_round_trip(result):
    text = result.model_dump_json()
    back = RecommendationResult.model_validate_json(text)
    assert back == result
    assert back.model_dump_json() == text


def test_unknown_title_and_user(plain):
    with pytest.raises(UnknownItemError):
        plain.recommend(history=["No Such Film Ever Made (2091)"], k=5)
    with pytest.raises(UnknownUserError):
        plain.recommend(user="no-such-user-xyz", k=5)
    with pytest.raises(MediarecError):
        plain.recommend(history=HISTORY, k=0)


def test_known_user(plain, catalog):
    user = _some_user(catalog)
    res = plain.recommend(user=user, k=5)
    seen = {x.item for x in catalog.history(user)}
    assert len(res.items) == 5 and not {r.item.id for r in res.items} & seen


def test_unreachable_hosted_llm_degrades(plain, home):
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = OpenAILLM("smollm2", base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-test-fake-key-123",
                     options=LLMOptions(timeout=5, retries=1))
    agent = Recommender(plain.catalog, plain.index, llm=dead)
    res = agent.recommend(history=HISTORY, k=5)
    assert res.degraded and res.degraded_reason
    assert res.stages == ["retrieval", "llm-list"]
    assert [r.item.id for r in res.items] == [c.item.id for c in res.candidates[:5]]
    assert [r.rank for r in res.items] == [1, 2, 3, 4, 5]


# -- privacy ----------------------------------------------------------------------------------
def _some_user(catalog: Catalog) -> str:
    """A user with a few interactions whose id is not a tiny number (so a match means a leak)."""
    for u, hist in catalog.by_user.items():
        if len(u) >= 3 and 5 <= len(hist) <= 40:
            return u
    return next(iter(catalog.by_user))


@pytest.mark.llm
def test_user_id_never_reaches_the_model(plain, rec, catalog):
    user = _some_user(catalog)
    cap = capturing_llm(rec.llm)
    agent = Recommender(plain.catalog, plain.index, llm=cap)
    res = agent.recommend(user=user, k=3)
    assert not res.degraded, res.degraded_reason
    assert cap.sent and "llm-score" in res.stages
    leak = re.compile(rf"(?<![0-9A-Za-z]){re.escape(user)}(?![0-9A-Za-z])")
    stamps = {str(int(x.timestamp)) for x in catalog.history(user) if x.timestamp >= 1e6}
    for messages in cap.sent:
        for m in messages:
            assert not leak.search(m["content"]), f"user id {user!r} in a {m['role']} message"
            assert not any(s in m["content"] for s in stamps), "a timestamp reached the prompt"
    # The history did reach the prompt (as items): the most recent title is there.
    last = catalog.item(catalog.history(user)[-1].item)
    assert any(last.title.split(",")[0][:15] in m["content"] for msgs in cap.sent for m in msgs)
