"""Load on a real ``mediarec serve``: throughput and latency of ``POST /recommend`` (retrieval + learned
stage, ``--llm none``) at 1, 8, 32 and 128 concurrent clients, and the CPU bound measured in the same
run; optionally, acknowledged events across repeated ``kill -9`` restarts under load.

    python benchmarks/serve_load.py --dataset demo --home /tmp/home-serve [--seconds 20]
    python benchmarks/serve_load.py --dataset demo --home /tmp/home-serve --kill-restarts 20

The home must hold the dataset's index (``mediarec index --dataset NAME``). The server is started
as its own process (``mediarec serve``); the load generator is httpx's async client in this one.

The CPU bound: the server's CPU-seconds (utime + stime from /proc) over the requests it answered in a
level, so ``cores / cpu_per_request`` is the most requests per second the cores could answer if the
server did nothing else; the target is throughput >= 80% of it at 32 clients, p99 <= 100 ms. The
load generator runs on the same cores, and its own CPU-seconds are reported beside.
Results (JSON and a Markdown table, with machine, date, commit and load average) go to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of the server and its worker processes (``--processes``), from /proc (clock ticks)."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def start_server(home: Path, dataset: str, port: int, log: Path, workers: int, processes: int = 1) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIAREC_")}
    env.update(MEDIAREC_HOME=str(home), ANONYMIZED_TELEMETRY="False",
               PYTHONPATH=str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "mediarec.cli", "serve", "--dataset", dataset, "--llm", "none",
                             "--port", str(port), "--workers", str(workers), "--processes", str(processes)],
                            env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
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
    raise SystemExit(f"the server did not come up; see {log}")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


async def level(url: str, key: str, users: list[str], clients: int, seconds: float, pid: int, k: int,
                explain: bool = True) -> dict:
    lat: list[float] = []
    codes: dict[int, int] = {}
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, limits=limits, timeout=60) as c:
        async def one(rng: random.Random) -> None:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                r = await c.post("/recommend", json={"user": rng.choice(users), "k": k, "explain": explain})
                dt = time.perf_counter() - t0
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    lat.append(dt)

        cpu0, me0, t0 = cpu_seconds(pid), _self_cpu(), time.perf_counter()
        await asyncio.gather(*(one(random.Random(i)) for i in range(clients)))
        wall, cpu, me = time.perf_counter() - t0, cpu_seconds(pid) - cpu0, _self_cpu() - me0
    n = len(lat)
    cores = os.cpu_count() or 1
    per_req = cpu / n if n else float("nan")
    bound = cores / per_req if n else float("nan")
    return {"clients": clients, "requests": n, "codes": codes, "seconds": wall, "throughput": n / wall,
            "p50_ms": 1000 * pct(lat, 0.50), "p99_ms": 1000 * pct(lat, 0.99), "server_cpu_s": cpu,
            "cpu_s_per_request": per_req, "cpu_bound_rps": bound, "share_of_bound": (n / wall) / bound if n else 0,
            "loadgen_cpu_s": me, "cores": cores}


def _self_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def kill_restarts(home: Path, dataset: str, key: str, users: list[str], items: list[str], n: int,
                  log: Path, workers: int) -> dict:
    """Post events from 8 threads, kill -9 the server at a random moment, restart; n times. Then
    every acknowledged event must be in the log."""
    port = free_port()
    acked: set[tuple[str, str, float]] = set()
    lock = threading.Lock()
    rng = random.Random(0)
    for r in range(n):
        proc = start_server(home, dataset, port, log, workers)
        stop = threading.Event()

        def post(w: int) -> None:
            i = 0
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=10) as c:
                while not stop.is_set():
                    ts = float(r * 10**7 + w * 10**5 + i)
                    ev = {"user": f"bench-{w}", "item": items[i % len(items)], "event": "watch", "timestamp": ts}
                    i += 1
                    try:
                        resp = c.post("/events", json=ev)
                    except httpx.HTTPError:
                        return
                    if resp.status_code == 200:
                        with lock:
                            acked.add((ev["user"], ev["item"], ts))

        threads = [threading.Thread(target=post, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 2.5))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join()
    from mediarec.catalog.own import registration

    reg = registration(dataset, home)
    path = reg.feedback_path if reg is not None else home / "serve" / dataset / "events.jsonl"
    on_disk = set()
    for line in path.read_text().splitlines():
        try:
            x = json.loads(line)
        except ValueError:
            continue
        on_disk.add((x["user"], x["item"], x["timestamp"]))
    return {"restarts": n, "acknowledged": len(acked), "lost": len(acked - on_disk), "log_lines": len(on_disk)}


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "commit": commit + ("+dirty" if dirty else ""),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "loadavg_before": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="demo")
    ap.add_argument("--home", required=True, help="a MEDIAREC_HOME where the dataset is indexed")
    ap.add_argument("--clients", default="1,8,32,128")
    ap.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    ap.add_argument("--workers", type=int, default=2, help="the server's --workers")
    ap.add_argument("--processes", type=int, default=1, help="the server's --processes")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--no-explain", action="store_true", help="ask without reasons (\"explain\": false)")
    ap.add_argument("--kill-restarts", type=int, default=0, help="also: N kill -9 restarts under event load")
    ap.add_argument("--tag", default="", help="a suffix for the result files (before/after runs side by side)")
    ap.add_argument("--output", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    os.environ["MEDIAREC_HOME"] = args.home
    from mediarec.catalog import load_dataset
    from mediarec.serve.keys import KeyStore

    home = Path(args.home)
    catalog = load_dataset(args.dataset)
    users = sorted(catalog.by_user)
    items = sorted(catalog.items)[:50]
    _, key = KeyStore(home).add("serve_load benchmark", rate=1e6)
    out = {"machine": machine(), "dataset": args.dataset, "items": len(catalog.items), "users": len(users),
           "command": "python benchmarks/serve_load.py " + " ".join(sys.argv[1:]), "seconds_per_level": args.seconds, "server_workers": args.workers, "server_processes": args.processes, "levels": []}
    log = Path(tempfile.gettempdir()) / f"serve_load-{args.dataset}.server.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = start_server(home, args.dataset, port, log, args.workers, args.processes)
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(level(url, key, users, 4, min(5.0, args.seconds), proc.pid, args.k))  # warm-up
        for c in (int(x) for x in args.clients.split(",")):
            res = asyncio.run(level(url, key, users, c, args.seconds, proc.pid, args.k, not args.no_explain))
            out["levels"].append(res)
            print(f"{c:4d} clients: {res['throughput']:7.1f} req/s  p50 {res['p50_ms']:7.1f} ms  "
                  f"p99 {res['p99_ms']:7.1f} ms  CPU {1000 * res['cpu_s_per_request']:.1f} ms/req  "
                  f"bound {res['cpu_bound_rps']:.1f} req/s ({100 * res['share_of_bound']:.0f}%)  "
                  f"loadgen CPU {1000 * res['loadgen_cpu_s'] / max(res['requests'], 1):.1f} ms/req  {res['codes']}",
                  flush=True)
    finally:
        proc.terminate()
        proc.wait(30)
    if args.kill_restarts:
        out["kill_restarts"] = kill_restarts(home, args.dataset, key, users, items, args.kill_restarts, log,
                                             args.workers)
        print(f"kill -9 restarts: {out['kill_restarts']}", flush=True)
    out["machine"]["loadavg_after"] = os.getloadavg()
    stem = Path(args.output) / (f"serve_load-{args.dataset}{'-no-explain' if args.no_explain else ''}"
                                f"{f'-p{args.processes}' if args.processes > 1 else ''}{f'-{args.tag}' if args.tag else ''}")
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    m = out["machine"]
    lines = [f"# serve_load: {args.dataset} ({out['items']} items, {out['users']} users)", "",
             f"{m['date']}, commit {m['commit']}, {m['cpu']}, {m['cores']} cores, Python {m['python']}; "
             f"load average before {m['loadavg_before'][0]:.1f}, after {m['loadavg_after'][0]:.1f} "
             "(the machine is shared: other jobs ran too).", "",
             f"`python benchmarks/serve_load.py {' '.join('HOME' if a == args.home else a for a in sys.argv[1:])}`: "
             "`POST /recommend` "
             f"(user, k={args.k}{', explain false' if args.no_explain else ''}; retrieval + learned stage, `--llm none`), server `--workers {args.workers} --processes {args.processes}`.", "",
             "| clients | req/s | p50 ms | p99 ms | server CPU ms/req | CPU bound req/s | share of bound | load generator CPU ms/req | statuses |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in out["levels"]:
        lines.append(f"| {r['clients']} | {r['throughput']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{1000 * r['cpu_s_per_request']:.1f} | {r['cpu_bound_rps']:.1f} | {100 * r['share_of_bound']:.0f}% | "
                     f"{1000 * r['loadgen_cpu_s'] / max(r['requests'], 1):.1f} | {r['codes']} |")
    if "kill_restarts" in out:
        kr = out["kill_restarts"]
        lines += ["", f"kill -9 restarts under event load: {kr['restarts']} restarts, {kr['acknowledged']} events "
                      f"acknowledged, {kr['lost']} lost ({kr['log_lines']} distinct events in the log)."]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {stem}.json and {stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
