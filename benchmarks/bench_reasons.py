"""The top 5's reasons: seconds of the explain stage per user, with the prompt and completion tokens.

    python benchmarks/bench_reasons.py --dataset demo [--llm qwen2.5-coder-0.5b] [--users alice,bruno,...]
    python benchmarks/bench_reasons.py --dataset movielens-100k --data-dir ../shared/data --users 1,2,3

Through the product's own path (``Recommender.recommend(k=5)``, the learned stage and the LLM's
order first, as by default), the answer cache off, one user after another. Issue 27's target is
the explain stage's seconds (≤ 2 s on 2 cores). The stage is prompt tails (each item's own facts,
evaluated in one batch) plus greedy steps that decode one token of every unfinished reason.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402
from mediarec.app import from_catalog
from mediarec.catalog import load_dataset


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="demo")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--llm", default="qwen2.5-coder-0.5b")
    p.add_argument("--users", default="alice,bruno,chen,dana,emil,fatima,u01,u02")
    p.add_argument("--name", default=None)
    p.add_argument("--note", default="", help="what differs in this run (recorded)")
    args = p.parse_args(argv)
    rec = from_catalog(load_dataset(args.dataset, data_dir=args.data_dir), llm=f"local:{args.llm}")
    rec.llm.cache.enabled = False  # every reason is written
    rows = []
    for user in args.users.split(","):
        r = rec.recommend(user=user, k=5)
        usage = r.stage_usage.get("explain")
        rows.append({"user": user, "explain_s": round(r.seconds["explain"], 3),
                     "prompt_tokens": usage.prompt_tokens if usage else None,
                     "reused_tokens": usage.reused_tokens if usage else None,
                     "completion_tokens": usage.completion_tokens if usage else None,
                     "llm_reasons": sum(x.reason_source == "llm" for x in r.items[:5])})
        print(rows[-1], flush=True)
    secs = [row["explain_s"] for row in rows]
    record(args.name or f"reasons-{args.dataset}-{args.llm}", {
        "dataset": args.dataset, "model": args.llm, "note": args.note, "users": rows,
        "explain_s": {"mean": round(statistics.mean(secs), 3), "median": round(statistics.median(secs), 3),
                      "max": max(secs)},
        "llm_reasons_share": sum(row["llm_reasons"] for row in rows) / (5 * len(rows))})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
