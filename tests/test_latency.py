"""What makes a turn fast, with the real SmolLM2-135M: the evaluated prefix is reused across
score → explain and across chat turns (and gives the numbers a cold evaluation gives), results
arrive early through ``on_update`` in the order the final result has, and the result says where
its time and tokens went."""

from __future__ import annotations

import json

import pytest

from mediarec.catalog import load_dataset
from mediarec.llm import LocalLLM
from mediarec.rank.prompts import PromptLibrary, candidate_entries, history_entries, labels as make_labels
from mediarec.recommender import Recommender
from mediarec.app import from_catalog
from mediarec.chat.session import ChatSession


@pytest.fixture(scope="module")
def demo():
    return load_dataset("demo")


@pytest.fixture(scope="module")
def llm(smol_path) -> LocalLLM:
    return LocalLLM(smol_path, n_ctx=4096, n_threads=1)  # one thread: the cores are shared


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@pytest.mark.llm
def test_prefix_reused_across_score_explain_and_turns_matches_cold(llm, demo):
    """Turn 1 scores and explains, turn 2 scores another request over other candidates: the
    explanation and turn 2 evaluate only what changed, and turn 2's label log-probabilities equal
    a cold evaluation's within 1e-3."""
    prompts = PromptLibrary()
    items = sorted(demo.items.values(), key=lambda it: it.id)
    hist = history_entries(demo.history_pairs(demo.history("alice")), 20)
    score_1 = prompts.render("score", history=hist, request="something funny",
                             candidates=candidate_entries(items[:20]))
    explain_1 = prompts.render("explain", history=hist, request="something funny", detail=False, reason_words=15,
                               candidates=candidate_entries(items[:3]))
    score_2 = prompts.render("score", history=hist, request="from the 90s", candidates=candidate_entries(items[20:40]))
    tok = [llm.tokenize(llm.format_prompt(m)) for m in (score_1, explain_1, score_2)]
    labs = make_labels(20)

    first = llm.label_logprobs(score_1, labs)
    assert first.usage.reused_tokens + first.usage.prompt_tokens == len(tok[0])
    reasons = llm.chat(explain_1, max_tokens=24)
    shared = _common(tok[0], tok[1])
    assert shared > 0.3 * len(tok[1])  # the system message and the history come first in both
    assert reasons.usage.reused_tokens == shared
    assert reasons.usage.prompt_tokens == len(tok[1]) - shared

    warm = llm.label_logprobs(score_2, labs)
    assert warm.usage.reused_tokens >= _common(tok[1], tok[2]) > 0.3 * len(tok[2])
    assert warm.usage.prompt_tokens == len(tok[2]) - warm.usage.reused_tokens
    llm.llama.n_tokens = 0  # forget every evaluated token
    cold = llm.label_logprobs(score_2, labs)
    assert cold.usage.reused_tokens == 0 and cold.usage.prompt_tokens == len(tok[2])
    for lab in labs:
        assert warm.logprobs[lab] == pytest.approx(cold.logprobs[lab], abs=1e-3)


@pytest.fixture(scope="module")
def rec(demo_home, demo, smol_path) -> Recommender:
    r = from_catalog(demo, llm=f"local:{smol_path}", second_stage=None)
    r.llm.n_threads = 1
    r.reranker.settings.explain_top = 2  # fewer tokens to generate on a shared machine
    return r


@pytest.mark.llm
def test_streamed_and_final_order_agree(rec):
    """The first update is the retrieval list (before any LLM call), the second the LLM's order,
    which the final result keeps; the final result's timing and tokens add up per stage."""
    updates = []
    calls_before = rec.stats.requests
    seen_llm_calls = []

    def on_update(r):
        updates.append(r)
        seen_llm_calls.append(rec.stats.requests - calls_before)

    result = rec.recommend(user="alice", query="something funny", k=5, on_update=on_update)
    assert [u.pending for u in updates[:2]] == ["the LLM is ranking", "reasons"]
    assert all(u.pending == "reasons" for u in updates[2:])  # reasons streamed as they pass the checker
    assert seen_llm_calls[:2] == [0, 1]  # the first list came before the LLM ran
    retrieval_order = [c.item.id for c in result.candidates[:5]]
    assert [r.item.id for r in updates[0].items] == retrieval_order
    assert updates[0].stages == ["retrieval"]
    final = {r.item.id: r for r in result.items}
    for u in updates[1:]:
        assert [r.item.id for r in u.items] == [r.item.id for r in result.items]
        for r in u.items:  # a streamed reason is the one the final result keeps
            assert r.reason is None or (final[r.item.id].reason_source == "llm" and final[r.item.id].reason == r.reason)
    assert all(r.reason is None for r in updates[0].items + updates[1].items)
    assert result.pending is None and result.stages[:2] == ["retrieval", "llm-score"]

    assert {"retrieval", "llm", "evidence", "total"} <= set(result.seconds)
    assert result.seconds["total"] >= sum(v for k, v in result.seconds.items() if k != "total") - 1e-3
    llm_usage = result.stage_usage["llm"]
    assert llm_usage.prompt_tokens + llm_usage.reused_tokens > 100 and llm_usage.completion_tokens == 0
    if "explain" in result.stages:
        assert result.stage_usage["explain"].completion_tokens > 0
        assert result.usage.completion_tokens == result.stage_usage["explain"].completion_tokens
    lines = result.timing_lines()
    assert lines[0].startswith("retrieval: ") and lines[-1].startswith("total: ")
    assert any(line.startswith("LLM ranking: ") and "prompt tokens evaluated" in line for line in lines)
    doc = json.loads(result.model_dump_json())
    assert doc["stage_usage"]["llm"]["prompt_tokens"] == llm_usage.prompt_tokens and doc["pending"] is None


def test_chat_why_shows_the_timing(demo_home, demo):
    plain = from_catalog(demo, llm="none", second_stage=None)
    session = ChatSession(plain, user="alice", k=3)
    reply = session.send("something funny")
    assert reply.kind == "recommendations"
    text = session.explain(1)
    assert "How long the list took:" in text
    assert "- retrieval: " in text and f"- total: {reply.result.seconds['total']:.2f} s" in text


@pytest.mark.parametrize("name", ["score", "rank", "explain"])
def test_the_stable_part_of_each_prompt_comes_first(demo, name):
    """Servers that cache prompt prefixes (vLLM, llama.cpp's server) and the local context reuse
    only a shared beginning: two turns with other requests and candidates share the system message
    and the whole history before anything that changes."""
    prompts = PromptLibrary()
    items = sorted(demo.items.values(), key=lambda it: it.id)
    hist = history_entries(demo.history_pairs(demo.history("alice")), 20)
    extra = {"n": 5, "reason_words": 15, "detail": False}

    def text(request, cands):
        msgs = prompts.render(name, history=hist, request=request, candidates=candidate_entries(cands), **extra)
        return "\n".join(f"<{m['role']}>{m['content']}" for m in msgs)

    one, two = text("something funny", items[:10]), text("from the 90s", items[10:20])
    shared = one[: _common(list(one), list(two))]
    assert "<user>" in shared  # the whole system message
    for h in hist:
        assert h["item"].title in shared


def test_the_history_cut_moves_in_steps():
    from mediarec.rank.prompts import cut_start

    assert [cut_start(n, 20, 5) for n in (3, 20, 21, 25, 26, 30, 31)] == [0, 0, 5, 5, 10, 10, 15]
    assert [cut_start(n, 20) for n in (20, 21, 26)] == [0, 1, 6]  # step 1: always the last 20
    shown = [len(history_entries(list(range(n)), 20, 5)) for n in range(20, 40)]
    assert min(shown) == 16 and max(shown) == 20


@pytest.mark.llm
def test_a_chat_turn_that_adds_an_item_keeps_the_history_prefix(llm, demo, rec):
    """With the chat's stepped cut, the score prompt after one more watched item starts with the
    previous prompt's history (its evaluated state is reused); with a cut of always the last 20,
    the first history line changes and only the system message is shared."""
    from mediarec.chat.session import CHAT_HISTORY_STEP, ChatSession, chat_history_step

    items = sorted(demo.items.values(), key=lambda it: it.id)
    cands = candidate_entries(items[:20])
    prompts = PromptLibrary()

    def prompt(n: int, step: int) -> str:
        hist = history_entries(items[20:20 + n], 20, step)
        return llm.format_prompt(prompts.render("score", history=hist, candidates=cands))

    for n in (21, 22, 23):  # turns that add one watched item each
        stepped = [llm.tokenize(prompt(m, CHAT_HISTORY_STEP)) for m in (n, n + 1)]
        plain = [llm.tokenize(prompt(m, 1)) for m in (n, n + 1)]
        assert _common(*stepped) > _common(*plain) + 100  # 15+ history lines more to reuse
        a, b = prompt(n, CHAT_HISTORY_STEP), prompt(n + 1, CHAT_HISTORY_STEP)
        shared = a[: next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)]
        shown = history_entries(items[20:20 + n], 20, CHAT_HISTORY_STEP)
        assert all(h["item"].title in shared for h in shown)  # the whole previous history is the prefix
    session = ChatSession(rec)
    assert session.recommender.reranker.settings.history_step == chat_history_step(rec.reranker.settings.max_history)
    assert chat_history_step(20) == CHAT_HISTORY_STEP and chat_history_step(5) == 2 and chat_history_step(1) == 1
    assert min(len(history_entries(items[:n], 5, 2)) for n in range(5, 30)) == 4  # a cut of 5 shows 4 or 5
    assert rec.reranker.settings.history_step == 1  # the caller's recommender is unchanged
    assert session.recommender.index is rec.index and session.recommender.llm is rec.llm
