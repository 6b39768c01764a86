"""Single-pass scoring vs. plain prompt evaluation, explained top-5, explained list (issue: LLM ranking).

    python benchmarks/bench_llm.py --data-dir ../shared/data [--llm qwen2.5-coder-0.5b] [--users 5] [--history 20]

For MovieLens 100k users with at least 40 history items: 20 history items (``--history``: the
prompts' history cut, see ``mediarec eval --history-cuts``) and the hybrid
retriever's top 20 candidates. Per user, with the answer cache off and the KV cache cleared:
(a) llama.cpp evaluating the scoring prompt's tokens and nothing else, (b) the whole single-pass
scoring path (render, tokenize, evaluate, label log-probabilities, softmax), (c) explanations for
the top 5 as the product writes them (checked, one prompt per item decoded together, one retry for failing ones), (d) the explained-list path (JSON ranking of 10 with reasons, schema-constrained).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b")
    ap.add_argument("--users", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--history", type=int, default=20)
    ap.add_argument("--skip-list", action="store_true", help="leave out (d), the slow explained list")
    args = ap.parse_args()

    from mediarec.config import get_settings
    from mediarec.catalog import load_dataset
    from mediarec.index.store import open_index
    from mediarec.llm import AnswerCache, LocalLLM
    from mediarec.rank.prompts import PromptLibrary, candidate_entries, history_entries
    from mediarec.rank.reranker import Reranker, RerankSettings
    from mediarec.index.retriever import Retriever
    from mediarec.llm.base import Usage
    from mediarec.rank.checker import ReasonChecker
    from mediarec.rank.evidence import EvidenceBuilder
    from mediarec.rank.parse import RankingParseError

    settings = get_settings()
    catalog = load_dataset("movielens-100k", args.data_dir)
    retriever = Retriever(open_index(catalog, settings))
    llm = LocalLLM(args.llm, settings=settings, n_threads=args.threads, cache=AnswerCache(None, enabled=False))
    prompts = PromptLibrary()
    reranker = Reranker(llm, prompts, RerankSettings())
    builder, checker = EvidenceBuilder(catalog, retriever.index), ReasonChecker(catalog)
    users = [u for u in catalog.users() if len(catalog.history(u)) >= 40][: args.users]
    rows = []
    llm.llama  # load once, outside the timings
    for u in users:
        hist = [(catalog.item(x.item), x) for x in catalog.history(u)[-max(args.history, 20):]]
        cands = retriever.candidates([it for it, _ in hist], k=20)
        h = history_entries(hist, args.history)
        msgs = prompts.render("score", history=h, candidates=candidate_entries(c.item for c in cands))
        tokens = llm.tokenize(llm.format_prompt(msgs))
        llm.llama.n_tokens = 0
        t0 = time.perf_counter()
        llm.llama.eval(tokens)
        raw = time.perf_counter() - t0
        llm.llama.n_tokens = 0
        t0 = time.perf_counter()
        scores, _ = reranker._score(h, cands, None)
        single = time.perf_counter() - t0
        top5 = sorted(cands, key=lambda c: -scores[c.item.id])[:5]
        evidence = builder.build([c.item for c in top5], hist, None)
        t0 = time.perf_counter()
        try:  # the product's path: checked reasons (one prompt per item for a local model), one retry
            reasons, log = reranker.checked_explain(h, top5, evidence, checker, [it for it, _ in hist],
                                                    [c.item for c in cands])
            usage = log.usage
        except RankingParseError as e:  # the product falls back to template reasons; time it all the same
            reasons, usage = {}, getattr(e, "usage", None) or Usage()
        explain = time.perf_counter() - t0
        listed, attempts, list_usage = None, None, Usage()
        if not args.skip_list:
            llm.llama.n_tokens = 0
            t0 = time.perf_counter()
            _, _, attempts, _, list_usage = reranker._list(h, cands, 10, None)
            listed = time.perf_counter() - t0
        rows.append({"prompt_tokens": len(tokens), "prompt_eval_s": raw, "single_pass_s": single,
                     "ratio": single / raw, "explain_top5_s": explain, "explain_reasons": len(reasons),
                     "explain_completion_tokens": usage.completion_tokens,
                     "explain_prompt_tokens": usage.prompt_tokens, "explain_reused_tokens": usage.reused_tokens,
                     "list_s": listed,
                     "list_attempts": attempts, "list_completion_tokens": list_usage.completion_tokens})
        print(rows[-1], flush=True)

    def med(key):
        vals = [r[key] for r in rows if r[key] is not None]
        return round(statistics.median(vals), 3) if vals else None

    record(f"llm-{args.llm}" + (f"-h{args.history}" if args.history != 20 else ""), {
        "model": args.llm, "threads": llm.n_threads, "users": len(rows), "history_items": args.history, "candidates": 20,
        "prompt_tokens_median": med("prompt_tokens"), "prompt_eval_s_median": med("prompt_eval_s"),
        "prompt_tokens_per_s": round(statistics.median(r["prompt_tokens"] / r["prompt_eval_s"] for r in rows), 1),
        "single_pass_s_median": med("single_pass_s"), "single_pass_over_prompt_eval_median": med("ratio"),
        "explain_top5_s_median": med("explain_top5_s"), "explain_reasons_passed_median": med("explain_reasons"),
        "explained_list_s_median": med("list_s"),
        "rows": rows,
    })


if __name__ == "__main__":
    main()
