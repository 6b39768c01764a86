"""Client/server: the index lives in a real ``chroma run`` server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402

from mediarec.catalog.model import Catalog  # noqa: E402
from mediarec.config import Settings  # noqa: E402
from mediarec.catalog import load_dataset  # noqa: E402
from mediarec.errors import ConfigError, IndexError_  # noqa: E402
from mediarec.index.store import open_index  # noqa: E402
from mediarec.index.retriever import Retriever  # noqa: E402
from conftest import CliResult, first_items, run_cli  # noqa: E402
from mediarec.app import add_interactions, add_items, from_catalog

pytestmark = pytest.mark.server

BIN = Path(sys.executable).parent
SLICE = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _heartbeat(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as r:
            return r.status == 200 and "heartbeat" in r.read().decode()
    except OSError:
        return False


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    exe = BIN / "chroma"
    exe = str(exe) if exe.is_file() else shutil.which("chroma")
    if exe is None:
        pytest.fail("the `chroma` CLI is not installed (it comes with chromadb)")
    data = tmp_path_factory.mktemp("chroma-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(data / "server.log", "w")
    proc = subprocess.Popen([exe, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _heartbeat(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"chroma server did not come up on {url} (exit {proc.poll()}):\n"
                            + (data / "server.log").read_text()[-2000:])
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def ml_slice(data_dir) -> Catalog:
    """The first 300 movies of ml-100k with their ratings (the same in any process)."""
    return first_items(load_dataset("movielens-100k", data_dir), SLICE, "ml-slice")


@pytest.fixture(scope="module")
def catalog(shared_data) -> Catalog:
    return ml_slice(shared_data)


@pytest.fixture
def home(tmp_path, model_home, monkeypatch) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    (h / "models").symlink_to(model_home / "models", target_is_directory=True)
    monkeypatch.setenv("MEDIAREC_HOME", str(h))
    monkeypatch.delenv("MEDIAREC_CHROMA_URL", raising=False)
    return h


@pytest.fixture(scope="module")
def served(chroma_server, catalog, embedder, tmp_path_factory):
    """The slice built into the server once."""
    home = tmp_path_factory.mktemp("served-home")
    idx = open_index(catalog, Settings(home=home, chroma_url=None), chroma_url=chroma_server, embedder=embedder)
    return idx, home


def _server_collections(url: str) -> dict[str, tuple[str, int]]:
    host, port = url.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    return {c.name: (str(c.id), c.count()) for c in client.list_collections()}


def test_build_in_the_server_and_retrieve_through_it(served, chroma_server, catalog):
    idx, home = served
    cols = _server_collections(chroma_server)
    modelled = len({x.item for x in catalog.interactions})
    assert cols["ml-slice-text"][1] == SLICE
    item_col, query_col = idx._collab_names()
    assert cols[item_col][1] == cols[query_col][1] == modelled
    assert idx.is_current()
    assert not (home / "index").exists()  # nothing went to the embedded store

    r = Retriever(idx, exact_search_max_items=0)  # every query goes to the server (300 items: else in memory)
    user = max(catalog.by_user, key=lambda u: len(catalog.by_user[u]))
    history = catalog.history(user)
    cands = r.candidates(history, k=10)
    assert len(cands) == 10
    assert not {x.item for x in history} & {c.item.id for c in cands}
    assert any("collab" in c.sources for c in cands)  # the collab collection was queried in the server
    hits = r.candidates([], k=5, query="space alien horror")
    assert {"Sci-Fi", "Horror"} <= set(hits[0].item.genres), [c.item.label for c in hits]
    in_memory = Retriever(idx)
    assert in_memory.exact_search
    assert [(c.item.id, c.score) for c in in_memory.candidates(history, k=10)] == [(c.item.id, c.score) for c in cands]


def test_a_second_client_loads_without_building(served, chroma_server, catalog, embedder, tmp_path):
    idx, _ = served
    before = _server_collections(chroma_server)
    again = open_index(catalog, Settings(home=tmp_path / "other"), chroma_url=chroma_server, build=False)
    assert (again.text_vectors == idx.text_vectors).all()
    assert again.collab.item_ids == idx.collab.item_ids
    assert _server_collections(chroma_server) == before  # nothing rebuilt


def test_another_process_loads_the_served_index(served, chroma_server, shared_data, catalog, home):
    """A separate Python process with its own client reads the same index (build=False) and gets
    the same candidates."""
    idx, _ = served
    user = max(catalog.by_user, key=lambda u: len(catalog.by_user[u]))
    expected = [c.item.id for c in Retriever(idx, exact_search_max_items=0).candidates(catalog.history(user), k=10)]
    script = textwrap.dedent(f"""
        import json
        from mediarec.catalog.model import Catalog
        from mediarec.catalog import load_dataset
        from mediarec.index.store import open_index
        from mediarec.index.retriever import Retriever
        full = load_dataset("movielens-100k", {str(shared_data)!r})
        ids = list(full.items)[:{SLICE}]
        keep = set(ids)
        cat = Catalog("ml-slice", [full.items[i] for i in ids], [x for x in full.interactions if x.item in keep])
        idx = open_index(cat, chroma_url={chroma_server!r}, build=False)
        print(json.dumps([c.item.id for c in Retriever(idx, exact_search_max_items=0).candidates(cat.history({user!r}), k=10)]))
    """)
    env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == expected


def test_unreachable_server_is_a_clear_index_error(catalog, home):
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(IndexError_, match=r"cannot reach the Chroma server at http://127\.0\.0\.1:\d+"):
        open_index(catalog, chroma_url=url)
    assert time.monotonic() - t0 < 30
    with pytest.raises(ConfigError, match="HOST:PORT"):
        open_index(catalog, chroma_url="http://")


def _cli(home: Path, *args: str) -> CliResult:
    return run_cli(*args, home=home)  # in this process: the server is the subject, not the command


def test_cli_index_and_recommend_through_the_server(chroma_server, home):
    demo = load_dataset("demo")  # ships in the package: a missing demo fails here, it is not skipped
    p = _cli(home, "index", "--dataset", "demo", "--chroma-url", chroma_server, "--quiet")
    assert p.returncode == 0, p.stderr
    assert f"indexed demo: {len(demo.items)} items" in p.stdout
    cols = _server_collections(chroma_server)
    assert cols["demo-text"][1] == len(demo.items)
    assert not (home / "index").exists()

    user = next(iter(demo.by_user))
    p = _cli(home, "recommend", "--dataset", "demo", "--user", user, "--llm", "none", "--json", "-k", "5",
             "--chroma-url", chroma_server)
    assert p.returncode == 0, p.stderr
    ids = [r["item"]["id"] for r in json.loads(p.stdout)["items"]]
    assert len(ids) == 5 and not {x.item for x in demo.history(user)} & set(ids)
    assert _server_collections(chroma_server) == cols  # served as built, not rebuilt


def test_cli_unreachable_server(home, shared_data):
    url = f"http://127.0.0.1:{_free_port()}"
    p = _cli(home, "index", "--dataset", "movielens-100k", "--data-dir", str(shared_data), "--chroma-url", url,
             "--quiet")
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("error: cannot reach the Chroma server at " + url)


def test_add_items_and_interactions_through_the_server(chroma_server, catalog, tmp_path, model_home):
    """An update against the server: new items embedded alone, a new fit replaces the old one there."""

    home = tmp_path / "h"
    home.mkdir()
    (home / "models").symlink_to(model_home / "models", target_is_directory=True)
    ids = list(catalog.items)
    new_ids = set(ids[-20:])
    base = catalog.replace(name="ml-grow", items=[catalog.items[i] for i in ids[:-20]],
                           interactions=[x for x in catalog.interactions if x.item not in new_ids])
    # the server's collections are the subject: no learned stage to train at each step
    rec = from_catalog(base, llm="none", chroma_url=chroma_server, settings=Settings(home=home), second_stage=None)
    old_fit = rec.index._collab_names()
    add_items(rec, [catalog.items[i] for i in ids[-20:]])
    assert rec.index.embedded == 20 and not rec.index.collab_refit
    assert _server_collections(chroma_server)["ml-grow-text"][1] == SLICE
    add_interactions(rec, [x for x in catalog.interactions if x.item in new_ids])
    cols = _server_collections(chroma_server)
    assert rec.index.collab_refit and old_fit[0] not in cols and rec.index._collab_names()[0] in cols
    assert rec.index.is_current() and not (home / "index").exists()
    assert set(rec.index.collab.item_ids) == {x.item for x in catalog.interactions}
