"""A scoring-prompt change judged on validation users: the same users, the same retrieved top 20,
the old and the new templates, paired.

    git archive REV src/mediarec/prompts | tar -x -C /tmp/old --strip-components=3
    # (a revision before the prompts moved, e.g. b285c14: src/mediarec/rank/templates, --strip-components=4)
    MEDIAREC_HOME=... python eval/prompt_ab.py --old /tmp/old --data-dir ../shared/data \
        --users 300 --output eval/results/movielens-100k-compact-prompt

Only validation users (the split's second-last item is the target; the test item is never read).
For each user whose target the hybrid retriever (fitted on the training part) puts in its top
``--pool``, both prompts rank the pool in retrieval order with single-pass scoring, and the target's
rank is recorded for the LLM's own order and for the fused order (``--weight``, as the product
fuses). NDCG@10 inside the pool, bootstrap intervals, the paired bootstrap and Wilcoxon p-values;
prompt tokens and seconds per prompt (each prompt cold). Rows are appended to ``rows.jsonl`` as they
come (no user ids), so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def rank_of(scores: dict, target: str) -> int:
    return 1 + sum(v > scores[target] for v in scores.values())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="folder with the old templates")
    ap.add_argument("--new", default=None, help="folder with the new templates (default: the shipped ones)")
    ap.add_argument("--dataset", default="movielens-100k")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--llm", default="local:qwen2.5-coder-0.5b")
    ap.add_argument("--users", type=int, default=300, help="validation users sampled (those in the pool count)")
    ap.add_argument("--history", type=int, default=5, help="history cut of both prompts")
    ap.add_argument("--pool", type=int, default=20)
    ap.add_argument("--weight", type=float, default=0.5, help="LLM weight of the fused order")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()

    from scipy.stats import wilcoxon

    from mediarec.catalog import load_dataset
    from mediarec.eval.metrics import ndcg_at_k
    from mediarec.eval.split import leave_last_out, sample_users
    from mediarec.eval.stats import bootstrap_ci, paired_bootstrap_p
    from mediarec.eval.systems import IndexProvider, retrieval_system
    from mediarec.llm import load_llm
    from mediarec.rank.fusion import fuse, softmax
    from mediarec.rank.prompts import PromptLibrary, history_entries, labels as make_labels
    from mediarec.rank.reranker import score_messages

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    split = leave_last_out(load_dataset(args.dataset, args.data_dir))
    train = split.train_catalog
    retriever = retrieval_system("hybrid", IndexProvider(progress=False))
    retriever.fit(train)
    ids = retriever.item_ids
    llm = load_llm(args.llm, cache=False)
    libs = {"old": PromptLibrary(args.old), "new": PromptLibrary(args.new)}
    labs = make_labels(args.pool)
    users = sample_users(split.valid_history, args.users, args.seed)
    done = sum(1 for _ in rows_path.open()) if rows_path.exists() else 0
    t_start = time.perf_counter()
    with rows_path.open("a") as f:
        for n, u in enumerate(users[done:], start=done):
            before = split.valid_history[u]
            scores = retriever.score_array(before)
            top = np.argsort(-scores, kind="stable")[: args.pool]
            cands = [ids[r] for r in top]
            row: dict = {"n": n, "in_pool": split.valid[u] in cands}
            if row["in_pool"]:
                target = split.valid[u]
                row["retrieval_rank"] = cands.index(target) + 1
                hist = history_entries(train.history_pairs(before), args.history)
                retrieval = {c: float(scores[r]) for c, r in zip(cands, top)}
                for name, lib in libs.items():
                    msgs = score_messages(lib, hist, [train.item(c) for c in cands])
                    llm.llama.n_tokens = 0  # cold: no prefix from the previous prompt
                    t0 = time.perf_counter()
                    res = llm.label_logprobs(msgs, labs)
                    seconds = time.perf_counter() - t0
                    probs = softmax(res.logprobs)
                    own = {c: probs.get(lab, 0.0) for c, lab in zip(cands, labs)}
                    row[name] = {"llm_rank": rank_of(own, target),
                                 "fused_rank": rank_of(fuse(own, retrieval, args.weight), target),
                                 "tokens": res.usage.prompt_tokens, "seconds": round(seconds, 3)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            print(n, row, flush=True)

    rows = [json.loads(line) for line in rows_path.open()]
    pool = [r for r in rows if r["in_pool"]]
    summary: dict = {"command": "python " + " ".join(os.sys.argv), "llm": args.llm, "dataset": args.dataset,
                     "phase": "valid", "users": len(rows), "in_pool": len(pool), "history_cut": args.history,
                     "pool": args.pool, "weight": args.weight, "load_avg_end": [round(x, 2) for x in os.getloadavg()],
                     "wall_seconds_this_run": round(time.perf_counter() - t_start, 1),
                     "retrieval_ndcg@10_in_pool": round(float(ndcg_at_k([r["retrieval_rank"] for r in pool], 10).mean()), 4)}
    for key in ("llm_rank", "fused_rank"):
        a = ndcg_at_k([r["old"][key] for r in pool], 10)
        b = ndcg_at_k([r["new"][key] for r in pool], 10)
        summary[key.replace("_rank", "")] = {
            "old_ndcg@10_in_pool": round(float(a.mean()), 4), "old_ci": [round(x, 4) for x in bootstrap_ci(a)],
            "new_ndcg@10_in_pool": round(float(b.mean()), 4), "new_ci": [round(x, 4) for x in bootstrap_ci(b)],
            "paired_bootstrap_p": round(float(paired_bootstrap_p(a, b)), 4),
            "wilcoxon_p": round(float(wilcoxon(a, b).pvalue), 4) if np.any(a != b) else 1.0}
    for name in ("old", "new"):
        summary[f"{name}_prompt_tokens_median"] = float(np.median([r[name]["tokens"] for r in pool]))
        summary[f"{name}_seconds_median"] = float(np.median([r[name]["seconds"] for r in pool]))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
