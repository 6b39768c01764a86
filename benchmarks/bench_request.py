"""Reading a request by scoring the catalogue's words (issue 27): seconds per request and accuracy,
rules vs rules + LLM scoring vs the MiniLM fallback, on the tuning paraphrases (DEV_PARAPHRASES)
and on the benchmark's (PARAPHRASES), ML-100k's vocabulary.

    python benchmarks/bench_request.py --llm qwen2.5-coder-0.5b --threads 1 [--data-dir DIR] [--set dev|test] [--bare]

Records the load average at start and end (other processes share the machine), the seconds of each
reading (the model's own time for the LLM) and the CPU seconds it took (the process's, all threads:
the fair measure on a shared machine, where wall time waits for other processes), p50 and p95 of
both over the readings that asked the LLM, and per genre how many were read right, wrong or left
unread. ``rules+similarity+llm-score`` is how ``recommend --llm-requests`` reads: the LLM is asked
only what the MiniLM fallback left, and of a close call only its two nearest genres.
Writes benchmarks/results/request-scoring-MODEL-SET[-bare].json.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import record  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=os.environ.get("MEDIAREC_DATA", "/work/shared/data"))
    ap.add_argument("--set", choices=("dev", "test"), default="dev")
    ap.add_argument("--bare", action="store_true", help="the paraphrases as they are, without the framings")
    ap.add_argument("--readers", default="rules,rules+similarity,rules+llm-score,rules+similarity+llm-score",
                    help="which readers, comma-separated")
    args = ap.parse_args(argv)

    from mediarec.catalog import load_dataset
    from mediarec.config import get_settings
    from mediarec.eval.requests import DEV_PARAPHRASES, PARAPHRASES, TEMPLATES, dev_paraphrase_cases
    from mediarec.index.embeddings import EMBEDDER_NAME, MiniLMEmbeddingFunction
    from mediarec.llm import load_llm, weights
    from mediarec.rank.request import parse_request, read_by_similarity
    from mediarec.rank.request_llm import llm_score_request

    settings = get_settings()
    cat = load_dataset("movielens-100k", args.data_dir)
    files = weights.resolve(EMBEDDER_NAME, settings, quiet=True)
    embed = MiniLMEmbeddingFunction(files["model"], files["tokenizer"]).embed
    llm = load_llm(f"local:{args.llm}", settings, cache=False, n_threads=args.threads)
    cases = dev_paraphrase_cases() if args.set == "dev" else [
        (g, t.format(p=p)) for g, ps in PARAPHRASES.items() for p in ps for t in TEMPLATES["paraphrase"]]
    if args.bare:
        cases = [(g, t) for g, t in cases if t in {p for ps in PARAPHRASES.values() for p in ps}
                 or t in {p for ps in DEV_PARAPHRASES.values() for p in ps}]
    load_start = os.getloadavg()[0]
    llm_score_request("warm-up: something to watch", cat, llm)  # loads the model, evaluates the vocabulary once
    def _then_llm(c):
        return llm_score_request(c.request, cat, llm, read=c) if c.unread else c

    readers = {"rules": lambda t: parse_request(t, cat),
               "rules+similarity": lambda t: read_by_similarity(parse_request(t, cat), cat, embed),
               "rules+llm-score": lambda t: llm_score_request(t, cat, llm),
               "rules+similarity+llm-score": lambda t: _then_llm(read_by_similarity(parse_request(t, cat), cat, embed))}
    readers = {k: v for k, v in readers.items() if k in args.readers.split(",")}
    def cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    def pct(xs: list[float], q: float) -> float | None:
        xs = sorted(xs)
        return xs[int(q * (len(xs) - 1))] if xs else None

    out: dict = {}
    llm_seconds: list[float] = []
    for name, read in readers.items():
        right = wrong = 0
        rows = []
        asked_wall: list[float] = []
        asked_cpu: list[float] = []
        for g, text in cases:
            t0, c0 = time.perf_counter(), cpu()
            c = read(text)
            wall, cpu_s = time.perf_counter() - t0, cpu() - c0
            if name.endswith("llm-score") and c.llm_seconds is not None:
                llm_seconds.append(c.llm_seconds)
                asked_wall.append(wall)
                asked_cpu.append(cpu_s)
            ok, bad = c.genres == [g], bool(c.genres) and c.genres != [g]
            right, wrong = right + ok, wrong + bad
            rows.append({"genre": g, "request": text, "read": c.describe(), "right": ok, "wrong": bad,
                         "seconds": round(wall, 4), "cpu_seconds": round(cpu_s, 4),
                         "asked_llm": c.llm_seconds is not None})
        out[name] = {"right": right, "wrong": wrong, "unread": len(cases) - right - wrong, "n": len(cases),
                     "accuracy": right / len(cases), "wrong_share": wrong / len(cases),
                     "seconds_mean": statistics.mean(r["seconds"] for r in rows),
                     "cpu_seconds_mean": statistics.mean(r["cpu_seconds"] for r in rows),
                     "llm_asked": len(asked_wall),
                     "llm_reading_seconds_p50": pct(asked_wall, 0.5), "llm_reading_seconds_p95": pct(asked_wall, 0.95),
                     "llm_reading_cpu_seconds_p50": pct(asked_cpu, 0.5),
                     "llm_reading_cpu_seconds_p95": pct(asked_cpu, 0.95),
                     "load_avg_1m_after": os.getloadavg()[0], "requests": rows}
        print(f"{name}: {right} right, {wrong} wrong of {len(cases)}; LLM asked {len(asked_wall)}: wall p50 "
              f"{pct(asked_wall, 0.5)} p95 {pct(asked_wall, 0.95)}, CPU p50 {pct(asked_cpu, 0.5)} "
              f"p95 {pct(asked_cpu, 0.95)}; load {os.getloadavg()[0]:.1f}", flush=True)
    qs = sorted(llm_seconds)
    record(f"request-scoring-{args.llm}-{args.set}{'-bare' if args.bare else ''}", {
        "llm": args.llm, "threads": args.threads, "set": args.set, "bare": args.bare, "catalog": "movielens-100k",
        "load_avg_1m_at_end": os.getloadavg()[0], "load_avg_1m_at_start_of_readings": load_start,
        "llm_seconds_mean": statistics.mean(qs) if qs else None,
        "llm_seconds_p50": qs[len(qs) // 2] if qs else None,
        "llm_seconds_p95": qs[int(0.95 * (len(qs) - 1))] if qs else None,
        "readers": out})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
