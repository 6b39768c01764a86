"""Training every non-LLM system plus the learned second stage on MovieLens 100k (issue 11's budget:
under 2 minutes on 2 cores), and the learned stage's cost per request.

    python benchmarks/bench_learned.py --data-dir ../shared/data

Leave-last-out, full ranking, all 943 users, in a fresh MEDIAREC_HOME: the text side is embedded
once first (timed apart: it is the index, shared by every system and split), then the harness
fits pop, itemknn, text, collab, hybrid and learned on the training catalogue and ranks every
user. "fit" is each system's fit (the collaborative model; for learned also the held-out model,
the examples and LightGBM), "rank" the scoring of all users.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--models", default=None, help="a MEDIAREC_HOME/models folder to reuse (no downloads)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDIAREC_HOME"] = tmp
        if args.models:
            os.symlink(Path(args.models).resolve(), Path(tmp) / "models")
        from mediarec.catalog import load_dataset
        from mediarec.eval import EvalProtocol, evaluate, leave_last_out
        from mediarec.eval.systems import IndexProvider, build_systems

        catalog = load_dataset("movielens-100k", args.data_dir)
        split = leave_last_out(catalog)
        provider = IndexProvider()
        t0 = time.perf_counter()
        provider.get(split.train_val_catalog)  # embeds the text side once
        index_s = time.perf_counter() - t0
        names = ["pop", "itemknn", "text", "collab", "hybrid", "learned"]
        t0 = time.perf_counter()
        report = evaluate(catalog, build_systems(names, provider), EvalProtocol(name="bench", bootstrap=0),
                          split=split, progress=False)
        total_s = time.perf_counter() - t0
        learned = [s for s in build_systems(["learned"], provider)][0]
        learned.fit(split.train_val_catalog)  # read back from the store
        users = list(split.test_history)[:200]
        lat = []
        for u in users:
            t1 = time.perf_counter()
            learned.score_array(split.test_history[u])
            lat.append((time.perf_counter() - t1) * 1000)
        hybrid = build_systems(["hybrid"], provider)[0]
        hybrid.fit(split.train_val_catalog)
        base = []
        for u in users:
            t1 = time.perf_counter()
            hybrid.score_array(split.test_history[u])
            base.append((time.perf_counter() - t1) * 1000)
    sys_ = report.systems
    record("learned-ml-100k", {
        "users": report.n_users, "text_index_seconds": round(index_s, 1),
        "all_systems_seconds": round(total_s, 1),
        "fit_seconds": {n: round(sys_[n]["fit_seconds"], 1) for n in names},
        "rank_seconds": {n: round(sys_[n]["seconds"] - sys_[n]["fit_seconds"], 1) for n in names},
        "ndcg@10": {n: round(sys_[n]["ndcg@10"], 4) for n in names},
        "learned_examples_in_pool": sys_["learned"]["extra"].get("learned_examples_in_pool"),
        "score_array_p50_ms": {"hybrid": round(statistics.median(base), 2),
                               "learned": round(statistics.median(lat), 2)},
        "budget_seconds": 120, "within_budget": total_s < 120,
    })


if __name__ == "__main__":
    main()
