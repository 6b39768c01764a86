"""Many recommendation requests from a thread pool to one Recommender (issue: reliability, load).

    python benchmarks/bench_load.py --data-dir ../shared/data [--threads 8] [--requests 40]
                                    [--llm-users 6] [--backends none,local,hosted]

MovieLens 100k, one ``Recommender`` shared by all threads, three backends:

* ``none``: retrieval only (Chroma queries from every thread at once);
* ``local``: SmolLM2-135M through llama.cpp in this process (calls serialised by the model lock);
* ``hosted``: the same model behind ``python -m llama_cpp.server`` on 127.0.0.1 (started and
  stopped here), reached through the ``openai`` client.

The LLM backends rank in single-pass ``score`` mode (one forward pass, a 1-token answer) over 10
candidates, without explanations, so a run fits in a few minutes on two cores.

Checks, per backend: no request fails; no answer is mixed up between users: every answer leaves
out that user's own history, and equals the answer computed serially for that user (exactly, item
ids in order). For the LLM backends the serial pass runs first with the answer cache on, so the
concurrent pass is served the same answers from the cache (``warm``); a ``cold`` concurrent pass
over other users, with an empty cache, measures the LLM itself under concurrent requests and is
checked for validity (candidates only, no duplicates, no history; and how many answers equal a
serial recompute). Throughput (requests/s) and p50/p95 latency go to benchmarks/results/load.json.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` on a free loopback port, for the hosted backend."""

    def __init__(self, model: str, log: Path, threads: int):
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", model, "--host", "127.0.0.1", "--port",
             str(self.port), "--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"llama_cpp.server exited with {self.proc.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"llama_cpp.server did not answer within 120 s; see {log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _one(rec, user: str, k: int, n_candidates: int):
    t0 = time.perf_counter()
    try:
        res = rec.recommend(user=user, k=k, n_candidates=n_candidates, explain=False)
        return user, [r.item.id for r in res.items], [c.item.id for c in res.candidates], res.degraded, \
            time.perf_counter() - t0, None
    except Exception as e:  # noqa: BLE001 - every failure is counted, the run goes on
        return user, [], [], False, time.perf_counter() - t0, f"{type(e).__name__}: {e}"


def _valid(catalog, user: str, ids: list[str], cands: list[str], k: int) -> str | None:
    seen = {x.item for x in catalog.history(user)}
    if len(ids) != k or len(set(ids)) != len(ids):
        return f"{len(ids)} items, {len(set(ids))} distinct"
    if set(ids) & seen:
        return "an item of the user's own history"
    if not set(ids) <= set(cands):
        return "an item that is not a candidate"
    return None


def run_pool(rec, catalog, users: list[str], threads: int, per_thread: int | None, k: int, n_candidates: int,
             expected: dict[str, list[str]] | None) -> dict:
    """``threads`` workers sending ``threads * per_thread`` requests (users in turn), or each user
    once when ``per_thread`` is None; checked and timed."""
    jobs = list(users) if per_thread is None else \
        [users[(t * per_thread + j) % len(users)] for t in range(threads) for j in range(per_thread)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        out = list(pool.map(lambda u: _one(rec, u, k, n_candidates), jobs))
    wall = time.perf_counter() - t0
    errors = [e for *_, e in out if e]
    invalid = [f"user {u}: {why}" for u, ids, cands, _, _, e in out if not e
               for why in [_valid(catalog, u, ids, cands, k)] if why]
    mismatched = [u for u, ids, *_ , e in out if not e and expected is not None and ids != expected[u]]
    lat = [s for *_, s, e in out if not e]
    return {"requests": len(jobs), "threads": threads, "distinct_users": len(set(jobs)), "wall_s": round(wall, 2),
            "throughput_rps": round(len(jobs) / wall, 2),
            "p50_ms": round(1000 * _pct(lat, 0.5), 1) if lat else None,
            "p95_ms": round(1000 * _pct(lat, 0.95), 1) if lat else None,
            "errors": len(errors), "error_samples": errors[:3], "invalid": len(invalid), "invalid_samples": invalid[:3],
            "mismatched": len(mismatched) if expected is not None else None, "mismatch_samples": mismatched[:3],
            "degraded": sum(1 for *_, d, _, e in out if d and not e),
            "answers": {u: ids for u, ids, *_ in out}}


def serial(rec, catalog, users: list[str], k: int, n_candidates: int) -> tuple[dict[str, list[str]], dict]:
    answers, lat, errors, invalid, degraded = {}, [], [], [], 0
    t0 = time.perf_counter()
    for u in users:
        _, ids, cands, deg, s, err = _one(rec, u, k, n_candidates)
        if err:
            errors.append(err)
            continue
        why = _valid(catalog, u, ids, cands, k)
        if why:
            invalid.append(f"user {u}: {why}")
        answers[u] = ids
        lat.append(s)
        degraded += deg
    wall = time.perf_counter() - t0
    return answers, {"requests": len(users), "wall_s": round(wall, 2), "throughput_rps": round(len(users) / wall, 2),
                     "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
                     "p95_ms": round(1000 * _pct(lat, 0.95), 1) if lat else None,
                     "errors": len(errors), "error_samples": errors[:3], "invalid": len(invalid), "degraded": degraded}


def bench_llm_backend(name, make_llm, catalog, index, users_warm, users_cold, args, cache_root: Path) -> dict:
    from mediarec.recommender import Recommender
    from mediarec.llm import AnswerCache
    from mediarec.rank.reranker import RerankSettings

    settings = RerankSettings(mode="score")
    llm = make_llm(AnswerCache(cache_root / f"{name}-warm"))
    rec = Recommender(catalog, index, llm, rerank=settings)
    print(f"[{name}] serial, cold cache, {len(users_warm)} users", flush=True)
    ref, serial_cold = serial(rec, catalog, users_warm, args.k, args.candidates)
    print(f"[{name}] {serial_cold}", flush=True)
    print(f"[{name}] {args.threads} threads x {args.requests} requests, warm cache", flush=True)
    warm = run_pool(rec, catalog, users_warm, args.threads, args.requests, args.k, args.candidates, ref)
    print(f"[{name}] warm: { {k: v for k, v in warm.items() if k != 'answers'} }", flush=True)

    # cold: the LLM itself under concurrent requests, each user once, empty cache
    llm_cold = make_llm(AnswerCache(cache_root / f"{name}-cold"))
    rec_cold = Recommender(catalog, index, llm_cold, rerank=settings)
    print(f"[{name}] {args.threads} threads, cold cache, {len(users_cold)} users", flush=True)
    cold = run_pool(rec_cold, catalog, users_cold, args.threads, None, args.k, args.candidates, None)
    # a serial recompute without the cache: how many concurrent answers equal it exactly
    llm_check = make_llm(AnswerCache(None, enabled=False))
    check, _ = serial(Recommender(catalog, index, llm_check, rerank=settings), catalog,
                      sorted(cold["answers"]), args.k, args.candidates)
    cold["equal_to_serial_recompute"] = sum(1 for u, ids in cold["answers"].items() if check.get(u) == ids)
    print(f"[{name}] cold: { {k: v for k, v in cold.items() if k != 'answers'} }", flush=True)
    for d in (warm, cold):
        d.pop("answers")
    return {"serial_cold": serial_cold, "concurrent_warm": warm, "concurrent_cold": cold}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--requests", type=int, default=40, help="requests per thread")
    ap.add_argument("--users", type=int, default=40, help="distinct users for the retrieval-only backend")
    ap.add_argument("--llm-users", type=int, default=4, help="distinct users per LLM pass")
    ap.add_argument("--llm", default="smollm2-135m")
    ap.add_argument("--llm-threads", type=int, default=1, help="llama.cpp threads (local and server)")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=10)
    ap.add_argument("--backends", default="none,local,hosted")
    args = ap.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    from mediarec.recommender import Recommender
    from mediarec.config import get_settings
    from mediarec.catalog import load_dataset
    from mediarec.index.store import open_index
    from mediarec.llm import LLMOptions, LocalLLM, OpenAILLM
    from mediarec.llm.weights import resolve

    settings = get_settings()
    catalog = load_dataset("movielens-100k", args.data_dir)
    t0 = time.perf_counter()
    index = open_index(catalog, settings)
    print(f"index ready in {time.perf_counter() - t0:.1f}s", flush=True)
    eligible = [u for u in sorted(catalog.users(), key=int) if len(catalog.history(u)) >= 20]
    results: dict = {}

    if "none" in backends:
        rec = Recommender(catalog, index, None)
        users = eligible[: args.users]
        ref, ser = serial(rec, catalog, users, args.k, args.candidates)
        pooled = run_pool(rec, catalog, users, args.threads, args.requests, args.k, args.candidates, ref)
        pooled.pop("answers")
        results["none"] = {"serial": ser, "concurrent": pooled}
        print(f"[none] {results['none']}", flush=True)

    model = str(resolve(args.llm, settings)["model"])
    warm_users = eligible[100: 100 + args.llm_users]
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        tmp_path = Path(tmp)
        if "local" in backends:
            def make_local(cache):
                return LocalLLM(model, n_ctx=4096, n_threads=args.llm_threads, cache=cache)
            results["local"] = bench_llm_backend("local", make_local, catalog, index, warm_users,
                                                 eligible[200: 200 + args.llm_users], args, tmp_path)
        if "hosted" in backends:
            srv = LlamaServer(model, tmp_path / "server.log", args.llm_threads)
            try:
                def make_hosted(cache):
                    return OpenAILLM("smollm2", base_url=srv.base_url, api_key="no-key-needed-for-loopback",
                                     options=LLMOptions(timeout=300, retries=1), cache=cache)
                results["hosted"] = bench_llm_backend("hosted", make_hosted, catalog, index, warm_users,
                                                      eligible[300: 300 + args.llm_users], args, tmp_path)
            finally:
                srv.stop()

    failures = []
    for name, r in results.items():
        for phase, d in r.items():
            for key in ("errors", "invalid", "mismatched"):
                if d.get(key):
                    failures.append(f"{name}/{phase}: {d[key]} {key}")
    summary = {name: {phase: {k: d.get(k) for k in ("requests", "throughput_rps", "p50_ms", "p95_ms")}
                      for phase, d in r.items()} for name, r in results.items()}
    record("load", {"dataset": "movielens-100k", "threads": args.threads, "requests_per_thread": args.requests,
                    "k": args.k, "candidates": args.candidates, "llm": args.llm, "llm_mode": "score",
                    "llm_threads": args.llm_threads, "ok": not failures, "failures": failures,
                    "summary": summary, "backends": results})
    if failures:
        print("FAILED: " + "; ".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
