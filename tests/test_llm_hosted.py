"""The OpenAI-compatible backend against real servers.

* A real ``llama_cpp.server`` (llama-cpp-python's OpenAI-compatible server) with SmolLM2-135M,
  reached through the official ``openai`` client: chat, structured output (downgraded when the
  server refuses ``json_schema``), label log-probabilities, the reranker in both modes.
* Failures: a server SIGKILLed in the middle of a run, a port where nothing listens.
* A tiny scripted HTTP server (``http.server`` on a real socket) for what a real server will not
  do on demand: 500s, a 429 with ``Retry-After``, a 200 whose content is no ranking, a 200 whose
  body is not JSON at all.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mediarec.catalog.model import Interaction, Item
from mediarec.config import get_settings
from mediarec.llm import LLMOptions, LLMUnavailable, LocalLLM, OpenAILLM, load_llm
from mediarec.rank.prompts import labels as make_labels
from mediarec.rank.fusion import softmax
from mediarec.rank.schemas import ranking_json_schema
from mediarec.rank.reranker import Reranker, RerankSettings
from mediarec.index.retriever import Candidate

from conftest import openai_completion

FAKE_KEY = "sk-test-fake-key-123"
SERVER_START_TIMEOUT = 60.0


# -- a real llama_cpp.server ------------------------------------------------------------------
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` in a child process, on a free loopback port."""

    def __init__(self, model: str, log: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                pytest.fail(f"llama_cpp.server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200 and json.load(r).get("data"):
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"llama_cpp.server did not answer within {SERVER_START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, open connections are cut."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


@pytest.fixture(scope="module")
def server_url(smol_path, tmp_path_factory) -> str:
    srv = LlamaServer(smol_path, tmp_path_factory.mktemp("llama-server") / "server.log")
    try:
        yield srv.base_url
    finally:
        srv.stop()


def hosted(base_url: str, **opts) -> OpenAILLM:
    return OpenAILLM("smollm2", base_url=base_url, api_key=FAKE_KEY,
                     options=LLMOptions(**{"timeout": 60, "retries": 1, **opts}))


# -- a small catalog slice (built directly: no index needed for the reranker) -----------------
ITEMS = [
    Item(id="m1", title="Alien", year=1979, genres=("Horror", "Sci-Fi")),
    Item(id="m2", title="Blade Runner", year=1982, genres=("Film-Noir", "Sci-Fi")),
    Item(id="c1", title="Aliens", year=1986, genres=("Action", "Sci-Fi", "Thriller")),
    Item(id="c2", title="The Terminator", year=1984, genres=("Action", "Sci-Fi")),
    Item(id="c3", title="Star Wars", year=1977, genres=("Action", "Adventure", "Sci-Fi")),
    Item(id="c4", title="Toy Story", year=1995, genres=("Animation", "Children's", "Comedy")),
    Item(id="c5", title="Brazil", year=1985, genres=("Sci-Fi",)),
    Item(id="c6", title="Sense and Sensibility", year=1995, genres=("Drama", "Romance")),
]
HISTORY = [(ITEMS[0], Interaction(user="u1", item="m1", rating=5.0, event="rating")),
           (ITEMS[1], Interaction(user="u1", item="m2", rating=4.0, event="rating"))]
CANDIDATES = [Candidate(item=it, score=1.0 - 0.1 * k) for k, it in enumerate(ITEMS[2:])]
CAND_IDS = [c.item.id for c in CANDIDATES]


def assert_complete(order: list[str]) -> None:
    assert sorted(order) == sorted(CAND_IDS) and len(order) == len(CAND_IDS)


# -- the real server --------------------------------------------------------------------------
@pytest.mark.llm
@pytest.mark.server
def test_chat_returns_text(server_url):
    llm = hosted(server_url)
    comp = llm.chat([{"role": "user", "content": "Name one science fiction film."}], max_tokens=16)
    assert comp.text.strip()
    assert 0 < comp.usage.completion_tokens <= 16 and comp.usage.prompt_tokens > 0
    assert FAKE_KEY not in repr(llm)


@pytest.mark.llm
@pytest.mark.server
def test_chat_with_schema_valid_answer_either_way(server_url):
    """llama_cpp.server refuses ``json_schema`` (HTTP 500, a validation error); the backend then
    asks for ``json_object`` and the answer is still JSON."""
    llm = hosted(server_url)
    schema = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"],
              "additionalProperties": False}
    comp = llm.chat([{"role": "system", "content": 'Answer with JSON only, like {"title": "..."}.'},
                     {"role": "user", "content": "Name one science fiction film."}], schema=schema, max_tokens=200)
    assert llm._schema_mode in ("json_schema", "json_object")
    data = json.loads(comp.text)
    assert isinstance(data, dict) and data


@pytest.mark.llm
@pytest.mark.server
def test_label_logprobs_through_top_logprobs(server_url, smol_path):
    """llama_cpp.server returns logprobs/top_logprobs for chat completions: single-pass scoring works."""
    labs = make_labels(5)
    msgs = [{"role": "system", "content": "Answer with one candidate label only."},
            {"role": "user", "content": "Candidates:\nA: \"Aliens\" (1986)\nB: \"Toy Story\" (1995)\n"
                                        "C: \"Brazil\" (1985)\nD: \"Heat\" (1995)\nE: \"Fargo\" (1996)\n"
                                        "Which one? Answer with the label only."}]
    res = hosted(server_url).label_logprobs(msgs, labs)
    assert list(res.logprobs) == labs
    assert all(math.isfinite(v) and v <= 0 for v in res.logprobs.values())
    assert sum(math.exp(v) for v in res.logprobs.values()) <= 1.0 + 1e-6
    # Same model, same chat template: the server's numbers match the local backend's.
    local = LocalLLM(smol_path, n_ctx=2048, n_threads=1).label_logprobs(msgs, labs)
    best_server = max(res.logprobs, key=res.logprobs.get)
    assert best_server == max(local.logprobs, key=local.logprobs.get)
    assert res.logprobs[best_server] == pytest.approx(local.logprobs[best_server], abs=0.05)


@pytest.mark.llm
@pytest.mark.server
def test_reranker_list_mode_over_server(server_url):
    llm = hosted(server_url)
    rr = Reranker(llm, settings=RerankSettings(mode="list", max_attempts=2))
    out = rr.rerank(HISTORY, CANDIDATES, k=3, explain=False)
    assert out.mode == "list"
    assert_complete(out.order)
    assert out.attempts >= 1
    if out.degraded:  # the tiny model may not manage the format; the outcome is valid anyway
        assert out.degraded_reason and out.order == CAND_IDS
    else:
        assert set(out.final_scores) == set(CAND_IDS)


@pytest.mark.llm
@pytest.mark.server
def test_reranker_score_mode_over_server(server_url):
    rr = Reranker(hosted(server_url), settings=RerankSettings(mode="score"))
    out = rr.rerank(HISTORY, CANDIDATES, k=3, explain=False)
    assert not out.degraded, out.degraded_reason
    assert_complete(out.order)
    assert sum(out.llm_scores.values()) == pytest.approx(1.0, abs=1e-6)


# -- a dead server ----------------------------------------------------------------------------
@pytest.mark.llm
@pytest.mark.server
def test_server_killed_mid_run_degrades(smol_path, tmp_path):
    srv = LlamaServer(smol_path, tmp_path / "server.log")
    try:
        llm = hosted(srv.base_url, timeout=5, retries=1)
        assert llm.chat([{"role": "user", "content": "Say hi."}], max_tokens=4).text  # alive
        rr = Reranker(llm, settings=RerankSettings(mode="list"))
        # Killed while the ranking request is being answered (prompt evaluation + generation of a
        # few hundred tokens on one thread takes well over 0.3 s).
        killer = threading.Timer(0.3, srv.kill)
        t0 = time.perf_counter()
        killer.start()
        out = rr.rerank(HISTORY, CANDIDATES, k=5, explain=True)
        elapsed = time.perf_counter() - t0
        killer.join()
        assert srv.proc.returncode == -signal.SIGKILL
        assert out.degraded and out.degraded_reason
        assert "retrieval order" in out.degraded_reason
        assert out.order == CAND_IDS and out.final_scores == {c.item.id: c.score for c in CANDIDATES}
        assert elapsed < 20, elapsed
        # And the next request, with the server gone for good.
        t0 = time.perf_counter()
        out2 = Reranker(llm, settings=RerankSettings(mode="score")).rerank(HISTORY[:1], CANDIDATES, k=3)
        assert out2.degraded and "Connection" in out2.degraded_reason
        assert out2.order == CAND_IDS
        assert time.perf_counter() - t0 < 20
    finally:
        srv.stop()


def test_nothing_listening_degrades_quickly():
    url = f"http://127.0.0.1:{free_port()}/v1"
    llm = hosted(url, timeout=5, retries=1)
    t0 = time.perf_counter()
    for mode in ("list", "score"):
        out = Reranker(llm, settings=RerankSettings(mode=mode)).rerank(HISTORY, CANDIDATES, k=3)
        assert out.degraded and out.degraded_reason and "APIConnectionError" in out.degraded_reason
        assert out.order == CAND_IDS
    assert time.perf_counter() - t0 < 20
    with pytest.raises(LLMUnavailable, match="after 2 attempts"):
        llm.chat([{"role": "user", "content": "hi"}])


# -- a scripted server on a real socket -------------------------------------------------------
@pytest.fixture
def scripted(scripted_openai_server):
    """``make(script)``: a server answering from a list of (status, headers, body); the last repeats."""

    def make(script: list[tuple[int, dict, object]]):
        script = list(script)
        return scripted_openai_server(lambda path, body, headers: script.pop(0) if len(script) > 1 else script[0])

    return make


ERR500 = (500, {}, {"error": {"message": "overloaded", "type": "server_error"}})


def test_500_twice_then_success(scripted):
    srv = scripted([ERR500, ERR500, (200, {}, openai_completion("fine"))])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=2))
    comp = llm.chat([{"role": "user", "content": "hi"}])
    assert comp.text == "fine" and comp.usage.prompt_tokens == 11
    assert len(srv.requests) == 3
    assert all(h.get("authorization") == f"Bearer {FAKE_KEY}" for h in srv.headers)


def test_500_beyond_retries_is_unavailable(scripted):
    srv = scripted([ERR500])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=1))
    with pytest.raises(LLMUnavailable, match="after 2 attempts"):
        llm.chat([{"role": "user", "content": "hi"}])
    assert len(srv.requests) == 2


def test_429_retry_after_is_honoured(scripted):
    srv = scripted([(429, {"Retry-After": "1"}, {"error": {"message": "slow down", "type": "rate_limit"}}),
                    (200, {}, openai_completion("after waiting"))])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=2))
    t0 = time.perf_counter()
    comp = llm.chat([{"role": "user", "content": "hi"}])
    assert comp.text == "after waiting"
    assert len(srv.requests) == 2
    assert srv.times[1] - srv.times[0] >= 0.9
    assert time.perf_counter() - t0 >= 0.9


def test_400_on_json_schema_downgrades_to_json_object(scripted):
    srv = scripted([(400, {}, {"error": {"message": "response_format json_schema is not supported"}}),
                    (200, {}, openai_completion('{"ranking": [{"id": "A", "reason": "r"}]}'))])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=1))
    comp = llm.chat([{"role": "user", "content": "rank"}], schema=ranking_json_schema(["A", "B"], 1))
    assert json.loads(comp.text)["ranking"][0]["id"] == "A"
    assert [r["response_format"]["type"] for r in srv.requests] == ["json_schema", "json_object"]
    assert llm._schema_mode == "json_object"


def test_non_json_content_uses_repair_then_degrades(scripted):
    srv = scripted([(200, {}, openai_completion("I think you would love Aliens, it is great!"))])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=1))
    out = Reranker(llm, settings=RerankSettings(mode="list", max_attempts=3)).rerank(HISTORY, CANDIDATES, k=3)
    assert out.degraded and "no valid ranking after 3 attempts" in out.degraded_reason
    assert out.attempts > 1 and out.order == CAND_IDS
    assert len(srv.requests) == 3  # the first answer and two repairs
    second = srv.requests[1]["messages"]
    assert second[-2]["role"] == "assistant" and "Aliens" in second[-2]["content"]
    assert second[-1]["role"] == "user" and "could not be used" in second[-1]["content"]


def test_non_json_content_then_repaired(scripted):
    srv = scripted([(200, {}, openai_completion("Sure! Here you go: Aliens is the best.")),
                    (200, {}, openai_completion('{"ranking": [{"id": "C", "reason": "tense"}, '
                                              '{"id": "A", "reason": "more Alien"}, {"id": "B", "reason": "x"}]}'))])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=1))
    rr = Reranker(llm, settings=RerankSettings(mode="list", llm_weight=1.0))
    out = rr.rerank(HISTORY, CANDIDATES, k=3)
    assert not out.degraded and out.repaired and out.attempts == 2
    assert out.order[:3] == ["c3", "c1", "c2"]  # labels C, A, B
    assert_complete(out.order)
    assert out.reasons["c3"] == "tense"
    assert len(srv.requests) >= 2 and "could not be used" in srv.requests[1]["messages"][-1]["content"]


def test_non_json_http_body_degrades(scripted):
    srv = scripted([(200, {"Content-Type": "text/html"}, b"<html><body>Bad gateway</body></html>")])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=1))
    with pytest.raises(LLMUnavailable, match="not a chat completion"):
        llm.chat([{"role": "user", "content": "hi"}])
    for mode in ("list", "score"):
        out = Reranker(llm, settings=RerankSettings(mode=mode)).rerank(HISTORY, CANDIDATES, k=3)
        assert out.degraded and out.order == CAND_IDS


def test_logprobs_missing_is_unavailable(scripted):
    srv = scripted([(200, {}, openai_completion("A"))])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=1))
    with pytest.raises(LLMUnavailable, match="no logprobs"):
        llm.label_logprobs([{"role": "user", "content": "pick"}], ["A", "B"])


def test_logprobs_labels_outside_top_list_get_a_floor(scripted):
    srv = scripted([(200, {}, openai_completion("B", logprobs=[(" B", -0.2), ("The", -1.5), ("A", -2.0)]))])
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=1))
    res = llm.label_logprobs([{"role": "user", "content": "pick"}], ["A", "B", "C"])
    assert res.logprobs == {"A": -2.0, "B": -0.2, "C": -3.0}
    assert srv.requests[0]["logprobs"] is True and srv.requests[0]["max_tokens"] == 1
    probs = softmax(res.logprobs)
    assert max(probs, key=probs.get) == "B"


# -- the key stays secret ---------------------------------------------------------------------
@pytest.mark.llm
@pytest.mark.server
def test_api_key_never_in_cache_files(server_url, tmp_home, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server_url)
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    llm = load_llm("openai:smollm2", get_settings(), options=LLMOptions(timeout=60, retries=1))
    assert isinstance(llm, OpenAILLM) and llm.cache.enabled
    assert FAKE_KEY not in repr(llm)
    msgs = [{"role": "user", "content": "Name a film."}]
    first = llm.chat(msgs, max_tokens=8)
    second = llm.chat(msgs, max_tokens=8)
    assert second.usage.cached and second.text == first.text
    llm.label_logprobs([{"role": "user", "content": "A or B? Answer with the letter."}], ["A", "B"])
    out = Reranker(llm, settings=RerankSettings(mode="score")).rerank(HISTORY, CANDIDATES, k=2, explain=False)
    assert_complete(out.order)
    assert not out.degraded, out.degraded_reason
    files = [p for p in tmp_home.rglob("*") if p.is_file()]
    assert len(files) >= 3
    for p in files:
        assert FAKE_KEY.encode() not in p.read_bytes(), p
