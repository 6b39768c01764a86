"""Choose TIER_BONUS ("like X but Y": the bonus of the items keeping X's genres, then a near genre)
on ML-100k's *validation* users, never the test ones: the hybrid system fitted on the validation
phase's training log, the `like` requests of the request benchmark, for each candidate bonus:
HR@10 / NDCG@10 of the validation target, adherence (Y) and character (the share of the top 10
sharing a genre with X).

    python eval/results/movielens-100k-like-tiers-val/choose.py [--data-dir ../shared/data]

Writes results.json and prints a table. Run from the repository root with the venv's python.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BONUSES = (0.0, 0.5, 1.0, 2.0, 4.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args(argv)

    from mediarec.catalog import load_dataset
    from mediarec.eval import requests
    from mediarec.eval.split import leave_last_out
    from mediarec.eval.systems import IndexProvider, build_systems
    from mediarec.rank import request

    catalog = load_dataset("movielens-100k", args.data_dir)
    split = leave_last_out(catalog)
    system = build_systems(["hybrid"], IndexProvider())[0]
    system.fit(split.fit_catalog("valid"))
    users = sorted(split.valid)
    out = {"users": len(users), "phase": "valid", "bonuses": {}}
    for b in BONUSES:
        request.TIER_BONUS = b
        t0 = time.perf_counter()
        s = requests.run_requests(system, split, users, types=("like",), phase="valid", bootstrap=args.bootstrap)
        m = s["types"]["like"]
        out["bonuses"][str(b)] = {k: m[k] for k in ("n", "hr@10", "ndcg@10", "adherence", "character",
                                                   "hr@10_history_only", "character_history_only")}
        out["bonuses"][str(b)]["seconds"] = time.perf_counter() - t0
        print(f"bonus {b}: HR@10 {m['hr@10']:.4f} NDCG@10 {m['ndcg@10']:.4f} adherence {m['adherence']:.3f} "
              f"character {m['character']:.3f} (history only: HR {m['hr@10_history_only']:.4f}, "
              f"character {m['character_history_only']:.3f})", flush=True)
    (HERE / "results.json").write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
