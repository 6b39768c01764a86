"""Shared fixtures: the real datasets beside the checkout, isolated MEDIAREC_HOMEs, artefacts built
once per session (the demo home with its index and learned model, the ml-100k index), the
``mediarec`` command run in this process (``run_cli``), and the test tiers.

Tiers (markers registered in pyproject.toml): ``llm`` loads a real llama.cpp model, ``slow`` takes
more than about 20 s, ``server`` starts a server process on 127.0.0.1. ``python3 tasks.py test
--fast`` deselects all three; ``python3 tasks.py test`` runs everything.

Built once per session, everything real:

* text embeddings: ``MiniLMEmbeddingFunction.embed`` answers each distinct text once per session
  (keyed by model file, truncation length and text) and embeds the rest for real, so the many
  indexes of the same catalogues built by different tests embed their texts once; tests of the
  embedder itself opt out with ``@pytest.mark.no_embedding_cache``;
* the learned stage: ``mediarec.rank.learned.train`` trains once per model fingerprint (catalogue,
  index text and collaborative sides, fusion, learned settings: everything the model depends on)
  and returns a fresh copy of that real model afterwards (what a stored model read back is);
* the demo home: ``demo_home_template`` is built once (index and learned model, as ``mediarec
  index --dataset demo`` leaves it); ``demo_home`` and ``copy_home`` give a module or a test its own
  copy to change (a copy of a Chroma folder nothing writes any more opens like the original, and
  costs milliseconds where a rebuild costs seconds).
* llama.cpp models and embedded Chroma systems, which a process keeps for its lifetime, are let go
  after each test module (memory).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

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


def first_items(catalog, n: int, name: str, users: int | None = None):
    """The first ``n`` items of ``catalog`` and their interactions, as catalog ``name``: real data,
    quick to embed, the same in any process. ``users``: only the histories of the first that many
    users (the learned stage trains on every user: fewer make a test's index quicker)."""
    from mediarec.catalog import Catalog

    ids = list(catalog.items)[:n]
    keep = set(ids)
    rows = [x for x in catalog.interactions if x.item in keep]
    if users is not None:
        who = set(list(dict.fromkeys(x.user for x in rows))[:users])
        rows = [x for x in rows if x.user in who]
    return Catalog(name, [catalog.items[i] for i in ids], rows)


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


# =============================================================================================
# The test tiers: a test that loads a real llama.cpp model must be marked ``llm``, one that starts
# a server process ``server`` (both checked as the tests run)
# =============================================================================================
_LLAMA_LOADS = [0]


@pytest.fixture(scope="session", autouse=True)
def _count_llama_loads():
    """Count every real llama.cpp model this process loads (see ``pytest_runtest_*`` below)."""
    try:
        from llama_cpp import Llama
    except ImportError:  # pragma: no cover - llama-cpp-python is a dependency
        yield
        return
    original = Llama.__init__

    def counting_init(self, *args, **kw):
        original(self, *args, **kw)
        _LLAMA_LOADS[0] += 1  # loaded (a file that fails to load loads nothing)

    Llama.__init__ = counting_init
    try:
        yield
    finally:
        Llama.__init__ = original


# ... and a test that starts a server process must be marked ``server``
_SERVERS_STARTED: list[str] = []


def _server_command(args) -> str | None:
    """What server ``args`` (a Popen argument list) starts, or None: ``chroma run``,
    ``python -m llama_cpp.server`` or ``mediarec serve``."""
    if args is None or isinstance(args, (str, bytes, os.PathLike)):
        return None
    argv = [os.fspath(a) if not isinstance(a, bytes) else a.decode() for a in args]
    names = [Path(a).name for a in argv]
    if "llama_cpp.server" in argv:
        return "llama_cpp.server"
    if names and names[0] == "chroma" and "run" in argv:
        return "chroma run"
    for k, (n, a) in enumerate(zip(names, argv)):
        if (n == "mediarec" or a == "mediarec.cli") and argv[k + 1:k + 2] == ["serve"]:
            return "mediarec serve"
    return None


@pytest.fixture(scope="session", autouse=True)
def _count_server_starts():
    """Record every server process this process starts (see ``pytest_runtest_*`` below)."""
    original = subprocess.Popen.__init__

    def recording_init(self, *args, **kw):
        what = _server_command(args[0] if args else kw.get("args"))
        if what is not None:
            _SERVERS_STARTED.append(what)
        original(self, *args, **kw)

    subprocess.Popen.__init__ = recording_init
    try:
        yield
    finally:
        subprocess.Popen.__init__ = original


def _check_tier_markers(item, before: tuple[int, int]) -> None:
    if _LLAMA_LOADS[0] > before[0] and item.get_closest_marker("llm") is None:
        pytest.fail(f"{item.nodeid} loads a real llama.cpp model but is not marked `llm` "
                    "(the fast tier, `tasks.py test --fast`, must not load one)", pytrace=False)
    if len(_SERVERS_STARTED) > before[1] and item.get_closest_marker("server") is None:
        pytest.fail(f"{item.nodeid} starts a server process ({_SERVERS_STARTED[-1]}) but is not marked "
                    "`server` (the fast tier, `tasks.py test --fast`, must not start one)", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    before = (_LLAMA_LOADS[0], len(_SERVERS_STARTED))
    result = yield
    _check_tier_markers(item, before)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    before = (_LLAMA_LOADS[0], len(_SERVERS_STARTED))
    result = yield
    _check_tier_markers(item, before)
    return result


# =============================================================================================
# Built once per session: text embeddings and learned models
# =============================================================================================
_EMBEDDING_CACHE_ON = [True]
_SHARED = Path(__file__).resolve().parent / "_shared_cache"  # shared_cache.py, and the children's sitecustomize


@pytest.fixture(scope="session", autouse=True)
def _shared_cache_folder(tmp_path_factory):
    """The session's folder of embeddings and learned models, handed to every process the tests start
    (``TESTS_SHARED_CACHE_DIR``, and ``_shared_cache`` on their PYTHONPATH for its sitecustomize)."""
    sys.path.insert(0, str(_SHARED))
    import shared_cache

    saved = {k: os.environ.get(k) for k in (shared_cache.ENV, "PYTHONPATH")}
    base = tmp_path_factory.getbasetemp()
    # Under pytest-xdist each worker has its own basetemp below the run's: the workers share one
    # folder there, so a text is embedded and a model trained once per run, not once per worker.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ[shared_cache.ENV] = str(root / "shared-cache")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(_SHARED)] + ([saved["PYTHONPATH"]] if saved["PYTHONPATH"] else []))
    try:
        yield Path(os.environ[shared_cache.ENV])
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="session", autouse=True)
def _embedding_cache(_shared_cache_folder):
    """Each distinct text is embedded once per session (real MiniLM, real vectors), in this process
    and the ones it starts: indexes of the same catalogue built by different tests, and the splits of
    one catalogue, embed nothing twice. ``@pytest.mark.no_embedding_cache`` turns it off for a test
    (tests of the embedder itself)."""
    import shared_cache

    from mediarec.index.embeddings import MiniLMEmbeddingFunction

    original = MiniLMEmbeddingFunction.embed
    MiniLMEmbeddingFunction.embed = shared_cache.embed_once(original, lambda: _EMBEDDING_CACHE_ON[0])
    try:
        yield MiniLMEmbeddingFunction.embed.memo
    finally:
        MiniLMEmbeddingFunction.embed = original


@pytest.fixture(autouse=True)
def _embedding_cache_switch(request):
    if request.node.get_closest_marker("no_embedding_cache") is None:
        yield
        return
    _EMBEDDING_CACHE_ON[0] = False
    try:
        yield
    finally:
        _EMBEDDING_CACHE_ON[0] = True


@pytest.fixture(scope="session", autouse=True)
def _learned_models_trained_once(_shared_cache_folder):
    """``mediarec.rank.learned.train`` runs once per model fingerprint (what the model depends on:
    catalogue, index text and collaborative sides, fusion, settings; training is seeded and single
    threaded) in the session, this process and the ones it starts together; later calls get a fresh
    copy of that real model, as reading a stored one gives."""
    import shared_cache

    from mediarec.rank import learned

    original = learned.train
    learned.train = shared_cache.train_once(original)
    try:
        yield learned.train.memo
    finally:
        learned.train = original


# =============================================================================================
# The ``mediarec`` command in this process
# =============================================================================================
class CliResult(NamedTuple):
    """What a ``mediarec`` run left: the exit status and its two output streams (the attribute
    names of ``subprocess.CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


_DEFAULT_WARNING_FILTERS = (("ignore", DeprecationWarning), ("ignore", PendingDeprecationWarning),
                            ("ignore", ImportWarning), ("ignore", ResourceWarning))


def run_cli(*args: str, home: Path | str | None = None, env: dict[str, str] | None = None,
            stdin: str | None = None) -> CliResult:
    """``mediarec ARGS`` run in this process, as the command runs it: ``mediarec.cli.main`` with the
    environment of a fresh shell (no MEDIAREC_* or OPENAI_* from the test run; MEDIAREC_HOME=``home``,
    plus ``env``), its own stdout, stderr, stdin, logging and Python warnings, and the exit status
    argparse, a user error or a crash would give. Use a real subprocess where the process boundary is
    the subject (kill -9, background jobs, two processes at once, native-library output)."""
    from mediarec.cli import main

    saved_env, saved_argv, saved_stdin = os.environ.copy(), sys.argv, sys.stdin
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    out, err = io.StringIO(), io.StringIO()
    for k in [k for k in os.environ if k.startswith(("MEDIAREC_", "OPENAI_"))]:
        del os.environ[k]
    os.environ.update(ANONYMIZED_TELEMETRY="False", COLUMNS="200", NO_COLOR="1")
    if home is not None:
        os.environ["MEDIAREC_HOME"] = str(home)
    os.environ.update(env or {})
    sys.argv = ["mediarec", *args]
    sys.stdin = io.StringIO(stdin or "")
    root.handlers = []  # main()'s logging.basicConfig installs its handler on this run's stderr

    def show(message, category, filename, lineno, file=None, line=None):
        err.write(warnings.formatwarning(message, category, filename, lineno, line))

    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.resetwarnings()
            warnings.simplefilter("default")
            for action, category in _DEFAULT_WARNING_FILTERS:
                warnings.filterwarnings(action, category=category)
            warnings.showwarning = show
            try:
                rc = main(list(args))
            except SystemExit as e:  # argparse: --help, usage errors
                rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if isinstance(e.code, str):
                    err.write(e.code + "\n")
            except Exception:  # noqa: BLE001 - a crash: the traceback a process would print, exit 1
                traceback.print_exc(file=err)
                rc = 1
    finally:
        for h in root.handlers:
            if h not in saved_handlers:
                h.close()
        root.handlers, root.level = saved_handlers, saved_level
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.stdin = saved_argv, saved_stdin
    return CliResult(int(rc or 0), out.getvalue(), err.getvalue())


def cli_command(*args: str) -> list[str]:
    """``mediarec ARGS`` as the installed command, for the tests that need a real process."""
    exe = Path(sys.executable).parent / "mediarec"
    if exe.is_file():
        return [str(exe), *args]
    found = shutil.which("mediarec")
    return [found, *args] if found else [sys.executable, "-m", "mediarec.cli", *args]


def cli_env(home: Path | str, **extra: str) -> dict[str, str]:
    """The environment of a ``mediarec`` process in a fresh shell (as ``run_cli`` gives in this
    process): no MEDIAREC_* or OPENAI_* from the test run, MEDIAREC_HOME=``home``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIAREC_", "OPENAI_"))}
    env.update(MEDIAREC_HOME=str(home), ANONYMIZED_TELEMETRY="False", COLUMNS="200", NO_COLOR="1", **extra)
    return env


def run_process(*args: str, home: Path | str, timeout: float = 600, **extra_env: str):
    """``mediarec ARGS`` in a real process (``cli_command``, ``cli_env``): for the tests where the
    process boundary is the subject; everything else uses ``run_cli``."""
    return subprocess.run(cli_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=cli_env(home, **extra_env))


_STALL_AT = textwrap.dedent("""
    import importlib, signal, sys, time
    from pathlib import Path

    # A Ctrl-C is a KeyboardInterrupt here even when the test run was started as a background job,
    # whose children inherit SIGINT ignored (a run started with nohup ... & left one asleep)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    marker, target = Path(sys.argv[1]), sys.argv[2]
    parts = target.split(".")
    for k in range(len(parts) - 1, 0, -1):  # the longest importable prefix is the module
        try:
            mod = importlib.import_module(".".join(parts[:k]))
            break
        except ImportError:
            continue
    for attr in parts[k:-1]:  # a method: module.Class.name
        mod = getattr(mod, attr)
    name = parts[-1]
    real = getattr(mod, name)
    calls = {"n": 0}
    after, when = int(sys.argv[3]), sys.argv[4]

    def stall(*args, **kwargs):
        if eval(when):  # the calls that count (an expression of args and kwargs)
            calls["n"] += 1
        if calls["n"] > after:  # the first `after` calls go through, then stop here to be killed
            marker.write_text(target)
            time.sleep(600)
        return real(*args, **kwargs)

    setattr(mod, name, stall)
    from mediarec.cli import main
    sys.exit(main(sys.argv[5:]))
""")


def kill_at(home: Path, tmp: Path, target: str, *args: str, after: int = 0, when: str = "True",
            env: dict[str, str] | None = None, sig: int = signal.SIGKILL) -> subprocess.CompletedProcess | None:
    """Run ``mediarec ARGS`` in a subprocess and SIGKILL it when it reaches ``target`` (module.function
    or module.Class.method) for the ``after+1``-th time (counting the calls whose ``args`` and
    ``kwargs`` make the expression ``when`` true). ``env``: added to its environment (``cli_env``).
    ``sig=signal.SIGINT``: a Ctrl-C there instead (it interrupts the wait at the point, as a Ctrl-C
    interrupts the work), and the finished process is returned."""
    marker = tmp / f"marker-{time.monotonic_ns()}"
    p = subprocess.Popen([sys.executable, "-c", _STALL_AT, str(marker), target, str(after), when, *args],
                         env=cli_env(home, **(env or {})),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while not marker.exists():
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline, "the command did not reach the point within 300 s"
            time.sleep(0.02)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):  # it had ended (the assertion above says how)
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        raise
    os.killpg(p.pid, sig)
    if sig != signal.SIGKILL:
        try:
            out, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:  # it did not stop: never leave it running after the test
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
            raise
        return subprocess.CompletedProcess(p.args, p.returncode, out.decode(), err.decode())
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL
    return None


# =============================================================================================
# Homes built once per session, copied for the tests that change them
# =============================================================================================
def copy_home(template: Path, dest: Path) -> Path:
    """A copy of a built MEDIAREC_HOME (its models/ stays a link to the shared model cache). The
    template's Chroma folder is complete and nothing writes it, so the copy opens as the original."""
    shutil.copytree(template, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def demo_home_template(tmp_path_factory, model_home) -> Path:
    """A home where the demo catalogue is indexed and its learned stage trained, as
    ``mediarec index --dataset demo`` leaves it. Read-only: copy it (``copy_home``) to change it."""
    home = make_home(tmp_path_factory.mktemp("demo-home-template"), model_home)
    p = run_cli("index", "--dataset", "demo", home=home)
    assert p.returncode == 0, p.stderr
    assert "second stage: learned" in p.stdout, p.stdout
    return home


@pytest.fixture(scope="module")
def demo_home(demo_home_template, tmp_path_factory) -> Path:
    """A copy of the built demo home for one test module, set as MEDIAREC_HOME (embedded Chroma)."""
    h = copy_home(demo_home_template, tmp_path_factory.mktemp("demo-home") / "home")
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", str(h))
    mp.delenv("MEDIAREC_CHROMA_URL", raising=False)
    yield h
    mp.undo()


# =============================================================================================
# Memory: what one test module loaded is let go before the next one starts
# =============================================================================================
def release_process_caches() -> None:
    """Close and drop what this process keeps for its lifetime (see the fixture below)."""
    import gc

    from chromadb.api.shared_system_client import SharedSystemClient

    from mediarec.llm import local

    local._close_open_pools()
    SharedSystemClient.clear_system_cache()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # glibc: hand the freed heap back to the system
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


@pytest.fixture(scope="module", autouse=True)
def _release_models_and_clients_after_each_module():
    """llama.cpp models stay loaded while their ``ModelPool`` is open (``mediarec.llm.local``: one per
    LocalLLM built without a shared pool) and so does every embedded Chroma system opened
    (``SharedSystemClient``, one per folder): in the product that is one of each, in a test session it
    is hundreds. (The explanation tools live in their index snapshot and go with it:
    tests/test_lifetimes.py.) After each module (whose own fixtures are gone by then) they are closed and dropped;
    the next module loads what it uses again (a memory-mapped model loads in well under a second)."""
    yield
    release_process_caches()


# =============================================================================================
# Memory: which test raised the process's peak (MEDIAREC_TEST_MEMLOG=FILE; off by default)
# =============================================================================================
_MEMLOG = os.environ.get("MEDIAREC_TEST_MEMLOG")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """With MEDIAREC_TEST_MEMLOG set, one line per test: its id, the process's peak RSS before and
    after it (setup, call and teardown) and the resident size after it, in MB, so the tests that
    set the suite's peak can be found from one ordinary run."""
    if not _MEMLOG:
        return (yield)
    import resource

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    result = yield
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(_MEMLOG, "a") as f:
        f.write(f"{item.nodeid}\t{peak_before:.0f}\t{peak_after:.0f}\t{rss_mb():.0f}\t{time.perf_counter() - t0:.1f}\n")
    return result
