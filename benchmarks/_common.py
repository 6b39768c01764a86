"""Shared bits of the benchmarks: machine description, result recording, retrieval latency."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {"platform": platform.platform(), "python": sys.version.split()[0], "cpu": cpu,
            "cores": os.cpu_count(), "load_avg_1m_at_start": load}


def record(name: str, data: dict) -> Path:
    """Write benchmarks/results/NAME.json with date, machine and command."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=RESULTS.parent).stdout.strip()
    except OSError:
        commit = ""
    out = {"benchmark": name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "command": "python " + " ".join(sys.argv), "commit": commit, **data}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return path


def candidates_latency_ms(retriever, histories, k: int = 20) -> list[float]:
    """Milliseconds of ``retriever.candidates`` per history, after one warm-up query."""
    histories = list(histories)
    retriever.candidates(histories[0], k=k)
    out = []
    for h in histories:
        t = time.perf_counter()
        retriever.candidates(h, k=k)
        out.append((time.perf_counter() - t) * 1000)
    return out
