"""``mediarec serve`` under concurrent requests: a request answered while others run on the same
worker threads (and the same BLAS controller, the same Chroma collections) gets the same list, scores
and reasons as the same request answered alone (docs/serve.md; benchmarks/serve_load.py measures the
speed)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import copy_home
from test_serve import _free_port, _start

from mediarec.catalog import load_dataset
from mediarec.serve.keys import KeyStore


def _ranked(doc: dict) -> list[tuple]:
    return [(x["item"]["id"], x["score"], x["retrieval_score"], x["learned_score"], tuple(x["sources"]), x["reason"])
            for x in doc["items"]]


@pytest.mark.server
def test_concurrent_requests_answer_as_requests_alone(demo_home_template, tmp_path):
    home = copy_home(demo_home_template, tmp_path / "home")
    _, key = KeyStore(home).add("concurrent", rate=100000)
    port, log = _free_port(), tmp_path / "serve.log"
    users = sorted(load_dataset("demo").by_user)[:12]
    proc = _start(home, port, log, "--workers", "4")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=60) as c:
            def ask(user: str) -> dict:
                r = c.post("/recommend", json={"user": user, "k": 10})
                assert r.status_code == 200, r.text
                return r.json()

            alone = {u: ask(u) for u in users}  # one at a time
            assert all(len(d["items"]) == 10 and "learned" in d["stages"] for d in alone.values())
            asked = users * 4
            with ThreadPoolExecutor(16) as pool:
                together = list(pool.map(ask, asked))
            for u, doc in zip(asked, together):
                assert _ranked(doc) == _ranked(alone[u]), u
            assert len({tuple(_ranked(d)) for d in alone.values()}) > 1  # distinct users, distinct lists
            metrics = c.get("/metrics").text
            assert f'mediarec_requests_total{{route="/recommend",status="200"}} {float(len(users) * 5)}' in metrics
    finally:
        proc.terminate()
        proc.wait(20)
