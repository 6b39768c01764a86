"""Shared fixtures: the real datasets beside the checkout and an isolated MEDIAREC_HOME."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDIAREC_TEST_DATA", REPO.parent / "shared" / "data"))
# Models are pulled once per machine into a cache shared by all test runs (not the user's own cache).
MODEL_CACHE = Path(os.environ.get("MEDIAREC_TEST_HOME", REPO / ".test-home"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "ml-100k" / "u.data").exists():
        pytest.fail(f"test data not found at {SHARED_DATA} (set MEDIAREC_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture
def tmp_home(tmp_path, monkeypatch) -> Path:
    """An empty MEDIAREC_HOME for one test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MEDIAREC_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def model_home() -> Path:
    """A MEDIAREC_HOME whose models/ persists across test runs, so real models are pulled once."""
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    return MODEL_CACHE


def make_home(root: Path, model_home: Path) -> Path:
    """An empty MEDIAREC_HOME at ``root`` whose models/ links to the shared model cache."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to((model_home / "models").resolve(), target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def module_home(tmp_path_factory, model_home) -> Path:
    """A fresh MEDIAREC_HOME for one test module, set in the environment (embedded Chroma)."""
    h = make_home(tmp_path_factory.mktemp("home"), model_home)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", str(h))
    mp.delenv("MEDIAREC_CHROMA_URL", raising=False)
    yield h
    mp.undo()


@pytest.fixture
def linked_home(tmp_path, model_home, monkeypatch) -> Path:
    """A fresh MEDIAREC_HOME for one test, set in the environment (embedded Chroma)."""
    h = make_home(tmp_path / "home", model_home)
    monkeypatch.setenv("MEDIAREC_HOME", str(h))
    monkeypatch.delenv("MEDIAREC_CHROMA_URL", raising=False)
    return h


@pytest.fixture(scope="session")
def smol_path(model_home) -> str:
    """Path of the tiny test LLM (smollm2-135m) in the shared model cache."""
    from mediarec.config import get_settings
    from mediarec.llm.weights import resolve

    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", str(model_home))
    try:
        return str(resolve("smollm2-135m", get_settings())["model"])
    finally:
        mp.undo()


@pytest.fixture(scope="session")
def ml100k(shared_data):
    """MovieLens 100k, loaded once per run (a Catalog is immutable, so every test can share it)."""
    from mediarec.catalog import load_dataset

    return load_dataset("movielens-100k", shared_data)


@pytest.fixture(scope="session")
def embedder(model_home):
    """The real MiniLM embedding function from the shared model cache."""
    from mediarec.config import Settings
    from mediarec.index.embeddings import EMBEDDER_NAME, MiniLMEmbeddingFunction
    from mediarec.llm import weights

    files = weights.resolve(EMBEDDER_NAME, Settings(home=model_home), quiet=True)
    return MiniLMEmbeddingFunction(files["model"], files["tokenizer"])


def first_items(catalog, n: int, name: str):
    """The first ``n`` items of ``catalog`` and their interactions, as catalog ``name``: real data,
    quick to embed, the same in any process."""
    from mediarec.catalog import Catalog

    ids = list(catalog.items)[:n]
    keep = set(ids)
    return Catalog(name, [catalog.items[i] for i in ids], [x for x in catalog.interactions if x.item in keep])


def capturing_llm(inner):
    """The real (local) LLM ``inner`` wrapped so that every message list it is sent is recorded
    in ``.sent``; for asserting what prompts carry."""
    from mediarec.llm.base import LLM

    class Capturing(LLM):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.spec = inner.spec
            self.supports_schema, self.supports_scoring = inner.supports_schema, inner.supports_scoring
            self.is_local = inner.is_local
            self.sent: list[list[dict]] = []

        def _chat(self, messages, schema, opts):
            self.sent.append(messages)
            return self.inner._chat(messages, schema, opts)

        def _label_logprobs(self, messages, labels):
            self.sent.append(messages)
            return self.inner._label_logprobs(messages, labels)

        def _chat_many(self, conversations, opts, stop, done):
            self.sent.extend(conversations)
            return self.inner._chat_many(conversations, opts, stop, done)

    return Capturing()


def openai_completion(text: str, logprobs: list[tuple[str, float]] | None = None) -> dict:
    """A chat.completion body as an OpenAI-compatible server sends it (for scripted servers)."""
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": logprobs[0][0], "logprob": logprobs[0][1], "bytes": None,
                                           "top_logprobs": [{"token": t, "logprob": lp, "bytes": None}
                                                            for t, lp in logprobs]}]}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "smollm2",
            "choices": [choice], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}


class ScriptedOpenAIServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 (real socket, own thread) whose answers come from
    ``handler``: one copy of the server plumbing for the tests that need a server to misbehave on
    demand (test_llm_hosted) or to see what reaches the wire (test_privacy).

    ``handler(path, body, headers) -> (status, extra_headers, payload)`` is called for every POST;
    ``body`` is the parsed JSON request (``{"raw": text}`` if it is not JSON), ``headers`` has
    lower-cased names. A ``bytes`` payload is sent as is, anything else as JSON (Content-Type
    application/json unless ``extra_headers`` says otherwise). Every request is recorded in
    ``requests`` (bodies), ``headers`` and ``times`` (``time.perf_counter()`` on arrival)."""

    def __init__(self, handler):
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.times: list[float] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.times.append(time.perf_counter())
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.headers.append(headers)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"raw": raw.decode(errors="replace")}
                outer.requests.append(body)
                status, extra, payload = handler(self.path, body, headers)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **extra}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted_openai_server():
    """``make(handler) -> ScriptedOpenAIServer``; every server made is closed after the test."""
    made: list[ScriptedOpenAIServer] = []

    def make(handler) -> ScriptedOpenAIServer:
        made.append(ScriptedOpenAIServer(handler))
        return made[-1]

    yield make
    for s in made:
        s.close()
