"""``mediarec serve``: the HTTP service over the demo catalogue, keys, events that survive kill -9,
back-pressure, and the 4xx answers to bad requests (docs/serve.md).

Most tests drive the real application in this process (Starlette's TestClient over httpx); the
``server`` tests start ``mediarec serve`` as a real process on 127.0.0.1 and kill it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import cli_command, copy_home, run_cli

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from mediarec.rank.result import RecommendationResult  # noqa: E402
from mediarec.serve.api import Service, create_app  # noqa: E402
from mediarec.serve.gate import Full, LLMGate, RateLimiter  # noqa: E402
from mediarec.serve.keys import KeyStore  # noqa: E402
from mediarec.serve.server import build_service  # noqa: E402


@pytest.fixture(scope="module")
def service(demo_home) -> Service:
    s = build_service("demo", llm="none")
    yield s
    s.close()


@pytest.fixture(scope="module")
def key(demo_home) -> str:
    _, k = KeyStore(demo_home).add("tests", rate=1000)
    return k


@pytest.fixture(scope="module")
def client(service, key):
    with TestClient(create_app(service)) as c:
        c.headers["Authorization"] = f"Bearer {key}"
        yield c


# -- keys and access ------------------------------------------------------------------------------
def test_keys_are_shown_once_and_stored_hashed(tmp_path, model_home):
    home = tmp_path / "home"
    home.mkdir()
    p = run_cli("keys", "add", "--name", "app", "--rate", "5", home=home)
    assert p.returncode == 0, p.stderr
    key = p.stdout.strip()
    assert key.startswith("mrk_") and len(key) > 30
    stored = (home / "serve" / "keys.json").read_text()
    secret = key.split("_", 2)[2]
    assert secret not in stored and key not in stored  # the hash and salt only
    assert oct((home / "serve" / "keys.json").stat().st_mode & 0o777) == "0o600"
    listed = run_cli("keys", "list", home=home)
    assert listed.returncode == 0 and "app" in listed.stdout and secret not in listed.stdout + listed.stderr
    kid = key.split("_")[1]
    checker = KeyStore(home).load()
    assert checker.check(key).id == kid and checker.check(key[:-1] + "x") is None and checker.check("") is None
    assert run_cli("keys", "revoke", kid, home=home).returncode == 0
    assert KeyStore(home).load().check(key) is None
    bad = run_cli("keys", "revoke", "nosuchid", home=home)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no key with id" in bad.stderr


def test_without_a_valid_key_only_healthz_answers(service, key, demo_home):
    with TestClient(create_app(service)) as c:
        assert c.get("/healthz").status_code == 200
        for method, path, body in (("get", "/items/m-alien-1979", None), ("get", "/metrics", None),
                                   ("post", "/recommend", {"user": "alice"}),
                                   ("post", "/events", {"user": "u", "item": "m-alien-1979", "event": "like"}),
                                   ("post", "/chat/s1", {"message": "sci-fi"})):
            for headers in ({}, {"Authorization": "Bearer mrk_00000000_wrong"},
                            {"Authorization": f"Bearer {key}x"}, {"X-API-Key": key[:-2]}):
                r = c.request(method, path, json=body, headers=headers)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                assert key[4:] not in r.text and "mrk_0" not in r.text and str(demo_home) not in r.text
        assert c.get("/items/m-alien-1979", headers={"X-API-Key": key}).status_code == 200
        # a key revoked while the server runs is refused from the next request on
        rec, other = KeyStore(demo_home).add("short-lived")
        assert c.get("/items/m-alien-1979", headers={"X-API-Key": other}).status_code == 200
        time.sleep(0.01)  # (a distinct mtime for the store on coarse file systems)
        KeyStore(demo_home).revoke(rec.id)
        assert c.get("/items/m-alien-1979", headers={"X-API-Key": other}).status_code == 401


def test_per_key_rate_limit(service, demo_home):
    _, slow = KeyStore(demo_home).add("slow", rate=0.5)  # bursts of 1
    with TestClient(create_app(service)) as c:
        c.headers["X-API-Key"] = slow
        assert c.get("/items/m-alien-1979").status_code == 200
        r = c.get("/items/m-alien-1979")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and slow not in r.text
    lim = RateLimiter()
    assert [lim.take("k", 2.0) == 0 for _ in range(5)] == [True] * 4 + [False]  # burst of 2 x rate


# -- the routes -----------------------------------------------------------------------------------
def test_recommend_answers_the_recommend_json_document(client, demo_home):
    r = client.post("/recommend", json={"user": "alice", "k": 5})
    assert r.status_code == 200, r.text
    result = RecommendationResult.model_validate_json(r.text)  # the schema of `recommend --json`
    assert len(result.items) == 5 and result.stages[0] == "retrieval"
    assert all(x.reason for x in result.items)
    assert str(demo_home) not in r.text and str(demo_home.resolve()) not in r.text  # model paths read $MEDIAREC_HOME
    cli = run_cli("recommend", "--dataset", "demo", "--user", "alice", "-k", "5", "--json", "--llm", "none",
                  home=demo_home)
    assert cli.returncode == 0, cli.stderr
    assert [x["item"]["id"] for x in json.loads(cli.stdout)["items"]] == [x.item.id for x in result.items]
    q = client.post("/recommend", json={"query": "tense 80s sci-fi", "k": 3})
    assert q.status_code == 200 and all(1980 <= x["item"]["year"] <= 1989 for x in q.json()["items"])


def test_items_healthz_and_metrics(client):
    item = client.get("/items/m-alien-1979")
    assert item.status_code == 200 and item.json()["title"] == "Alien"
    assert client.get("/items/nope").status_code == 404
    client.post("/recommend", json={"user": "alice", "k": 2})
    text = client.get("/metrics").text
    assert 'mediarec_requests_total{route="/recommend",status="200"}' in text
    assert "mediarec_request_seconds_bucket" in text and "mediarec_llm_admitted" in text
    assert client.get("/docs").status_code == 200 and "/recommend" in client.get("/openapi.json").json()["paths"]


def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(client, service, demo_home):
    cases = [
        (client.post("/recommend", content=b'{"user": "alice",', headers={"content-type": "application/json"}),
         400, "malformed JSON"),
        (client.post("/recommend", json={"user": "alice", "k": 10**9}), 422, "less than or equal to 100"),
        (client.post("/recommend", json={"user": "alice", "k": 0}), 422, "greater than or equal to 1"),
        (client.post("/recommend", json={"user": "nobody-at-all"}), 404, "unknown user"),
        (client.post("/recommend", json={"history": ["No Such Film Ever"]}), 404, "unknown item"),
        (client.post("/recommend", json={}), 422, "give a user, a history or a query"),
        (client.post("/recommend", json={"user": "alice", "surprise": 1}), 422, "invalid request"),
        (client.post("/recommend", content=b"x" * (70 * 1024), headers={"content-type": "application/json"}),
         413, "over 65536 bytes"),
        (client.post("/events", json={"user": "u", "item": "nope", "event": "like"}), 404, "unknown item"),
        (client.post("/events", json={"user": "u", "item": "m-alien-1979", "event": "rating"}), 422,
         "carries a rating"),
        (client.post("/events", json={"user": "u", "item": "m-alien-1979", "event": "shrug"}), 422, "invalid"),
        (client.post("/events", json={"events": []}), 422, "invalid"),
        (client.post("/events", json={"user": "u", "item": "m-alien-1979", "event": "like",
                                      "timestamp": time.time() + 86400 * 365}), 422, "in the future"),
        (client.post("/events", json={"user": "  ", "item": "m-alien-1979", "event": "like"}), 422, "empty user"),
        (client.post("/chat/bad%20id", json={"message": "hi"}), 422, "invalid"),
    ]
    for r, status, words in cases:
        assert r.status_code == status, (words, r.status_code, r.text)
        assert words in r.text, r.text
        assert str(demo_home) not in r.text and "Traceback" not in r.text
    before = service.events.log.written
    r = client.post("/events", json={"events": [{"user": "u", "item": "m-alien-1979", "event": "like"},
                                                {"user": "u", "item": "nope", "event": "like"}]})
    assert r.status_code == 404 and "events[1]" in r.text
    assert service.events.log.written == before  # all or nothing
    assert client.post("/recommend", json={"user": "alice", "k": 3}).status_code == 200


def test_a_slow_body_gets_408_and_others_are_served(service, key):
    """A client that stops mid-body is cut off after the body timeout, not held forever."""
    from mediarec.serve import api

    async def app(scope, receive, send):  # what the guard wraps: reads the whole body
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    import asyncio

    sent = []

    async def scenario():
        parts = [{"type": "http.request", "body": b"{", "more_body": True}]

        async def receive():
            if parts:
                return parts.pop()
            await asyncio.sleep(3600)  # never sends the rest

        async def send(msg):
            sent.append(msg)

        await api.BodyGuard(app, timeout=0.2)({"type": "http", "headers": []}, receive, send)

    asyncio.run(scenario())
    assert sent[0]["status"] == 408


def test_events_are_written_before_the_ack_and_count_at_once(client, service):
    first = client.post("/recommend", json={"user": "alice", "k": 5}).json()["items"][0]["item"]["id"]
    lines = service.events.path.read_text().splitlines() if service.events.path.exists() else []
    r = client.post("/events", json={"user": "alice", "item": first, "event": "dislike"})
    assert r.status_code == 200 and r.json() == {"written": 1, "durable": True}
    after = service.events.path.read_text().splitlines()
    assert len(after) == len(lines) + 1 and json.loads(after[-1])["item"] == first  # on disk when acknowledged
    again = [x["item"]["id"] for x in client.post("/recommend", json={"user": "alice", "k": 5}).json()["items"]]
    assert first not in again  # a disliked item is never recommended back
    # someone the catalogue does not know, known through their events alone
    r = client.post("/events", json={"events": [{"user": "newcomer", "item": "m-alien-1979", "event": "like"},
                                                {"user": "newcomer", "item": "m-aliens-1986", "event": "rating",
                                                 "rating": 5}]})
    assert r.json()["written"] == 2
    rec = client.post("/recommend", json={"user": "newcomer", "k": 3})
    assert rec.status_code == 200 and {"m-alien-1979", "m-aliens-1986"}.isdisjoint(
        x["item"]["id"] for x in rec.json()["items"])
    # a play with its count (a strength, written as the catalog's logs hold it); a weight on a like is refused
    r = client.post("/events", json={"user": "newcomer", "item": "m-heat-1995", "event": "play", "weight": 12})
    assert r.json()["written"] == 1 and json.loads(service.events.path.read_text().splitlines()[-1])["weight"] == 12
    bad = client.post("/events", json={"user": "newcomer", "item": "m-heat-1995", "event": "like", "weight": 3})
    assert bad.status_code == 422 and "only a watch or play" in bad.text


def test_chat_streams_a_list_then_the_reply(client):
    with client.stream("POST", "/chat/t1", json={"message": "tense 80s sci-fi"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.iter_lines())
    kinds = [k for k, _ in events]
    assert kinds[0] == "list" and kinds[-1] == "reply", kinds
    assert events[0][1]["items"] and events[0][1]["pending"]  # provisional: reasons still to come
    reply = events[-1][1]
    assert reply["kind"] == "recommendations" and reply["result"]["items"]
    shown = reply["result"]["items"][1]["item"]["id"]
    with client.stream("POST", "/chat/t1", json={"message": "not 2"}) as r:  # the same session
        reply = _sse(r.iter_lines())[-1][1]
    assert shown not in [x["item"]["id"] for x in reply["result"]["items"]]


def _sse(lines) -> list[tuple[str, dict]]:
    out, kind = [], None
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            out.append((kind, json.loads(line[6:])))
    return out


def test_the_llm_gate_is_bounded():
    gate = LLMGate(depth=2)
    release = threading.Event()
    running = [gate.submit(release.wait), gate.submit(release.wait)]
    with pytest.raises(Full) as full:
        gate.submit(lambda: None)
    assert full.value.retry_after >= 1 and gate.admitted == 2
    release.set()
    for f in running:
        f.result(timeout=10)
    assert gate.admitted == 0 and gate.submit(lambda: 7).result(timeout=10) == 7
    gate.close()


# -- with the LLM (SmolLM2) -----------------------------------------------------------------------
@pytest.mark.llm
def test_llm_queue_full_answers_429_or_degraded_and_chat_streams(demo_home, key, smol_path):
    s = build_service("demo", llm="local:smollm2-135m", llm_queue=1)
    try:
        with TestClient(create_app(s)) as c:
            c.headers["X-API-Key"] = key
            # the SSE stream: the retrieval list first, then the LLM's order, then the reply
            with c.stream("POST", "/chat/llm", json={"message": "tense 80s sci-fi", "k": 3}) as r:
                events = _sse(r.iter_lines())
            kinds = [k for k, _ in events]
            assert kinds[0] == "list" and kinds[-1] == "reply" and kinds.count("list") >= 2, kinds
            assert events[0][1]["stages"] == ["retrieval"] and events[0][1]["pending"] == "the LLM is ranking"
            assert any(st.startswith("llm") for st in events[-1][1]["result"]["stages"])
            # the queue full (depth 1, held by a job that waits): refused or degraded, the fast path answers
            release = threading.Event()
            deadline = time.monotonic() + 120  # the chat's own LLM work may still be admitted (slow under load)
            while s.gate.admitted and time.monotonic() < deadline:
                time.sleep(0.05)
            assert s.gate.admitted == 0
            held = s.gate.submit(release.wait)
            ask = {"user": "alice", "k": 3, "explain": False}
            busy = c.post("/recommend", json=ask)
            degraded = c.post("/recommend", json={**ask, "on_overload": "degrade"})
            fast = c.post("/recommend", json={**ask, "llm": False})
            chat_busy = c.post("/chat/llm2", json={"message": "sci-fi", "k": 3})
            with c.stream("POST", "/chat/llm2", json={"message": "sci-fi", "k": 3, "on_overload": "degrade"}) as r:
                chat_degraded = _sse(r.iter_lines())
            release.set()
            held.result(timeout=30)
            full = c.post("/recommend", json=ask)  # the queue free again: the LLM ranks
            assert busy.status_code == 429 and int(busy.headers["retry-after"]) >= 1, busy.text
            assert degraded.status_code == 200 and degraded.json()["degraded"] is True
            assert "LLM queue is full" in degraded.json()["degraded_reason"]
            assert not any(st.startswith("llm") for st in degraded.json()["stages"])
            assert fast.status_code == 200 and fast.json()["degraded"] is False
            assert chat_busy.status_code == 429 and "on_overload" in chat_busy.text
            assert chat_degraded[-1][0] == "reply" and chat_degraded[-1][1]["result"]["degraded"] is True
            assert not any(st.startswith("llm") for st in chat_degraded[-1][1]["result"]["stages"])
            assert full.status_code == 200 and any(st.startswith("llm") for st in full.json()["stages"])
            assert 'mediarec_llm_overload_total{action="reject"} 2.0' in c.get("/metrics").text
    finally:
        s.close()
        s.rec.close()


# -- a real server process ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(home: Path, port: int, log: Path, *extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEDIAREC_", "OPENAI_"))}
    env.update(MEDIAREC_HOME=str(home), ANONYMIZED_TELEMETRY="False")
    proc = subprocess.Popen([*cli_command(), "serve", "--dataset", "demo", "--llm", "none", "--port", str(port), *extra],
                            env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"mediarec serve did not come up:\n{log.read_text()[-2000:]}")


@pytest.mark.server
def test_no_acknowledged_event_is_lost_to_kill_9(demo_home_template, tmp_path):
    home = copy_home(demo_home_template, tmp_path / "home")
    _, key = KeyStore(home).add("load", rate=100000)
    port, log = _free_port(), tmp_path / "serve.log"
    headers = {"X-API-Key": key}
    acked: list[tuple[str, str, float]] = []
    lock = threading.Lock()
    items = ["m-alien-1979", "m-aliens-1986", "m-the-thing-1982", "m-blade-runner-1982"]
    for restart in range(3):
        proc = _start(home, port, log)
        stop = threading.Event()

        def post(worker: int) -> None:
            n = 0
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as c:
                while not stop.is_set():
                    ts = float(restart * 10**6 + worker * 10**4 + n)
                    ev = {"user": f"w{worker}", "item": items[n % len(items)], "event": "watch", "timestamp": ts}
                    n += 1
                    try:
                        r = c.post("/events", json={"events": [ev]})
                    except httpx.HTTPError:
                        return  # killed mid-request: not acknowledged
                    if r.status_code == 200 and r.json()["written"] == 1:
                        with lock:
                            acked.append((ev["user"], ev["item"], ts))

        workers = [threading.Thread(target=post, args=(w,)) for w in range(4)]
        for w in workers:
            w.start()
        time.sleep(1.0 + 0.3 * restart)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        stop.set()
        for w in workers:
            w.join(20)
    proc = _start(home, port, log)
    try:
        logged = [json.loads(x) for x in (home / "serve" / "demo" / "events.jsonl").read_text().splitlines()]
        on_disk = {(x["user"], x["item"], x["timestamp"]) for x in logged}
        assert len(acked) > 20, len(acked)
        assert set(acked) <= on_disk, f"lost {len(set(acked) - on_disk)} acknowledged events"
        # the restarted server knows them: a user known through events alone gets a list
        r = httpx.post(f"http://127.0.0.1:{port}/recommend", json={"user": "w0", "k": 3}, headers=headers, timeout=30)
        assert r.status_code == 200 and r.json()["items"]
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.server
def test_serve_binds_loopback_and_refuses_without_a_key(demo_home_template, tmp_path):
    home = copy_home(demo_home_template, tmp_path / "home")
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _start(home, port, log)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/items/m-alien-1979").status_code == 401
        out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout \
            if subprocess.run(["which", "ss"], capture_output=True).returncode == 0 else ""
        if out:
            assert f"127.0.0.1:{port}" in out and f"0.0.0.0:{port}" not in out
        text = log.read_text()
        assert "no API keys" in text and f"http://127.0.0.1:{port}" in text
        taken = run_cli("serve", "--dataset", "demo", "--llm", "none", "--port", str(port), home=home)
        assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr, taken.stderr
        assert "Traceback" not in taken.stderr
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.server
def test_web_page_in_headless_chromium(demo_home_template, tmp_path):
    """Type a request, wait for the list, dislike an item: it is gone, and the dislike is on disk."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    chromium, driver_path = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        # .ci/run installs them: in CI a missing browser is a failure, not a silent skip
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            "headless Chromium is not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    home = copy_home(demo_home_template, tmp_path / "home")
    _, key = KeyStore(home).add("browser", rate=1000)
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _start(home, port, log)
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(a)
    browser = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=opts)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        browser.find_element(By.ID, "key").send_keys(key)
        browser.find_element(By.ID, "message").send_keys("tense 80s sci-fi")
        browser.find_element(By.ID, "send").click()
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, "#list li .reason")) >= 5)
        first = browser.find_elements(By.CSS_SELECTOR, "#list li")[0]
        gone = first.get_attribute("data-item")
        assert first.find_element(By.CSS_SELECTOR, ".meta").text.startswith("(198")  # the year and genres
        wait.until(lambda b: b.find_element(By.ID, "list").get_attribute("data-turn") == "1")
        first.find_element(By.CSS_SELECTOR, "button.dislike").click()
        # removed at once, then the session's new list ("not 1") is drawn: the second reply
        try:
            wait.until(lambda b: b.find_element(By.ID, "list").get_attribute("data-turn") == "2")
        except Exception:
            pytest.fail(f"no second list; status: {browser.find_element(By.ID, 'status').text!r}")
        assert browser.find_elements(By.CSS_SELECTOR, "#list li")
        shown = [li.get_attribute("data-item") for li in browser.find_elements(By.CSS_SELECTOR, "#list li")]
        assert gone not in shown
        logged = [json.loads(x) for x in (home / "serve" / "demo" / "events.jsonl").read_text().splitlines()]
        assert any(x["item"] == gone and x["event"] == "dislike" for x in logged)
        assert key not in browser.current_url
    finally:
        browser.quit()
        proc.terminate()
        proc.wait(20)


@pytest.mark.slow
def test_events_of_your_own_catalog_go_to_its_feedback_log(tmp_path, model_home):
    """A registered catalog's events land in the log every load reads: the next load (a restart, an index
    build, the background refit) has them in the histories."""
    from conftest import make_home
    from mediarec.catalog import load_dataset
    from mediarec.catalog.own import registration

    home = make_home(tmp_path / "home", model_home)
    demo = Path(__file__).resolve().parents[1] / "src" / "mediarec" / "catalog" / "demo"
    p = run_cli("index", "--items", str(demo / "items.jsonl"), "--interactions", str(demo / "interactions.jsonl"),
                "--name", "mine", "--quiet", home=home)
    assert p.returncode == 0, p.stderr
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", str(home))
    try:
        s = build_service("mine", llm="none", refit_every=0.5)
        assert s.events.own and s.events.path == registration("mine", home).feedback_path
        assert "newcomer" not in s.rec.catalog.by_user
        _, key = KeyStore(home).add("t")
        with TestClient(create_app(s), headers={"X-API-Key": key}) as c:
            r = c.post("/events", json={"events": [
                {"user": "alice", "item": "m-heat-1995", "event": "like", "timestamp": 1.7e9},
                {"user": "newcomer", "item": "m-alien-1979", "event": "like", "timestamp": 1.7e9}]})
            assert r.status_code == 200 and r.json()["written"] == 2
            assert c.post("/recommend", json={"user": "newcomer", "k": 3}).status_code == 200  # at once
            deadline = time.monotonic() + 300
            while s.refits == 0 and time.monotonic() < deadline:  # the refit folds them into the served fit
                time.sleep(0.2)
            assert s.refits == 1 and "newcomer" in s.rec.catalog.by_user and not s.events.pending()
            assert s.events.history("newcomer") == []  # counted once: in the catalog now
            assert c.post("/recommend", json={"user": "newcomer", "k": 3}).status_code == 200
            assert "mediarec_refits 1.0" in c.get("/metrics").text
        s.close()
        again = load_dataset("mine")  # the next load (a restart) has them too
        assert any(x.item == "m-heat-1995" and x.event == "like" for x in again.history("alice"))
        assert again.fingerprint() == s.rec.catalog.fingerprint()  # the same catalog as the refit served
    finally:
        mp.undo()


@pytest.mark.server
def test_several_processes_share_the_event_log(demo_home_template, tmp_path):
    """``--processes 2``: an event posted to one process counts in the other's answers (each tails the log)."""
    home = copy_home(demo_home_template, tmp_path / "home")
    _, key = KeyStore(home).add("p", rate=1000)
    port, log = _free_port(), tmp_path / "serve.log"
    proc = _start(home, port, log, "--processes", "2")
    url, headers = f"http://127.0.0.1:{port}", {"X-API-Key": key}
    try:
        deadline = time.monotonic() + 120  # /healthz answers once the first worker is up; wait for both
        pids = set()
        while len(pids) < 2 and time.monotonic() < deadline:
            pids = {int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()}
            time.sleep(0.5)
        r = httpx.post(f"{url}/events", json={"user": "roamer", "item": "m-alien-1979", "event": "dislike"},
                       headers=headers, timeout=30)
        assert r.status_code == 200
        time.sleep(20)  # (both workers up)
        for _ in range(8):  # new connections: either process answers
            with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
                rec = c.post("/recommend", json={"user": "roamer", "k": 5})
            assert rec.status_code == 200, rec.text
            assert rec.json()["basis"]["disliked"] == ["m-alien-1979"]
    finally:
        proc.terminate()
        proc.wait(30)


def test_forget_removes_what_the_server_took_and_the_server_refuses_them(demo_home_template, tmp_path, model_home):
    """Events posted for a built-in dataset live in the server's own log: `forget` rewrites it without
    the person (someone known through those events alone is known to forget), and a server started
    afterwards neither serves nor accepts them."""
    home = copy_home(demo_home_template, tmp_path / "home")
    _, k = KeyStore(home).add("tests", rate=1000)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", str(home))
    try:
        s = build_service("demo", llm="none")
        try:
            with TestClient(create_app(s)) as c:
                c.headers["Authorization"] = f"Bearer {k}"
                rows = [{"user": "visitor-7", "item": "m-alien-1979", "event": "like"},
                        {"user": "visitor-7", "item": "m-aliens-1986", "event": "watch"},
                        {"user": "alice", "item": "m-alien-1979", "event": "like"}]
                assert c.post("/events", json={"events": rows}).json()["written"] == 3
                log = s.events.path
        finally:
            s.close()
        p = run_cli("forget", "--dataset", "demo", "--user", "visitor-7", home=home)
        assert p.returncode == 0, p.stderr
        assert f"removed 2 row(s) of visitor-7 from {log}" in p.stdout
        kept = [json.loads(x) for x in log.read_text().splitlines()]
        assert [x["user"] for x in kept] == ["alice"]  # other people's events stay
        assert "visitor-7" not in p.stdout.split("left:")[-1] or "no file of demo" in p.stdout

        s = build_service("demo", llm="none")
        try:
            with TestClient(create_app(s)) as c:
                c.headers["Authorization"] = f"Bearer {k}"
                assert c.post("/recommend", json={"user": "visitor-7", "k": 3}).status_code == 404
                r = c.post("/events", json={"user": "visitor-7", "item": "m-alien-1979", "event": "like"})
                assert r.status_code == 409 and "forgotten" in r.text
        finally:
            s.close()
    finally:
        mp.undo()
