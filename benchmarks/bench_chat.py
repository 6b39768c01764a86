"""A chat session and `recommend` as a user meets them: seconds per turn, where they go, and the bound.

    nice -n 10 python benchmarks/bench_chat.py --data-dir ../shared/data [--llm qwen2.5-coder-0.5b] [--users 5]

Two runs with the answer cache off, through the product's own path (``ChatSession.send`` and
``Recommender.recommend``, the learned stage and explanations as configured by default):

* a 5-turn chat on the demo catalog as user alice (a request, a filter, feedback, a refusal and a
  new request): per turn the seconds until the first visible list (``on_update``), until the
  LLM's order, and in all; seconds and tokens per stage (evaluated, reused, generated);
* ``recommend`` for ML-100k users (history only, k=10).

The bound of a turn is what llama.cpp alone needs for the same tokens: the prompt tokens it had to
evaluate at the bare prompt-evaluation rate, plus the generated tokens at the bare generation rate
(both measured here, before and after the runs, and averaged: the load moves). The ratio to it says how much time goes
elsewhere; below 1 means the prefix reuse made the turn cheaper than its tokens evaluated cold would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import record  # noqa: E402
from mediarec.app import from_dataset
from mediarec.chat.session import ChatSession

TURNS = ["something funny", "from the 90s", "more like 2", "not 1", "a tense thriller"]


def bare_rates(llm, messages) -> dict:
    """llama.cpp's own prompt-evaluation rate (a cold prompt) and generation rate (one token per
    decode after it), in tokens per second."""
    tokens = llm.tokenize(llm.format_prompt(messages))
    ll = llm.llama
    ll.n_tokens = 0
    t0 = time.perf_counter()
    ll.eval(tokens)
    eval_s = time.perf_counter() - t0
    n_gen = 32
    t0 = time.perf_counter()
    for t in tokens[:n_gen]:  # the token ids do not matter for the cost of a one-token decode
        ll.eval([t])
    gen_s = time.perf_counter() - t0
    ll.n_tokens = 0
    return {"prompt_tokens": len(tokens), "prompt_eval_tokens_per_s": len(tokens) / eval_s,
            "generation_tokens_per_s": n_gen / gen_s}


def turn_row(result, seconds: float, marks: dict) -> dict:
    stages = {}
    for stage, sec in result.seconds.items():
        u = result.stage_usage.get(stage)
        stages[stage] = {"seconds": round(sec, 3)} | ({
            "prompt_tokens": u.prompt_tokens, "reused_tokens": u.reused_tokens,
            "completion_tokens": u.completion_tokens} if u is not None else {})
    evaluated = sum(u.prompt_tokens for u in result.stage_usage.values())
    generated = sum(u.completion_tokens for u in result.stage_usage.values())
    cold = sum(u.prompt_tokens + u.reused_tokens for u in result.stage_usage.values())
    at = {k: round(marks[k], 3) if k in marks else None for k in ("first", "llm", "first_reason")}
    return {"seconds": round(seconds, 3), "first_list_s": at["first"], "llm_order_s": at["llm"],
            "first_streamed_reason_s": at["first_reason"], "streamed_reasons": marks.get("streamed_reasons", 0),
            "llm_stages": [s for s in result.stages if s != "retrieval"], "stages": stages,
            "evaluated_prompt_tokens": evaluated, "reused_prompt_tokens": cold - evaluated,
            "generated_tokens": generated, "cold_prompt_tokens": cold}


def add_bounds(row: dict, rates: dict) -> None:
    """The turn's bound at llama.cpp's bare rates, and the ratios to it (the whole turn, and the
    LLM ranking stage alone, which is prompt evaluation only)."""
    ev, gen = rates["prompt_eval_tokens_per_s"], rates["generation_tokens_per_s"]
    bound = row["evaluated_prompt_tokens"] / ev + row["generated_tokens"] / gen
    row["bound_s"] = round(bound, 3)
    row["ratio_to_bound"] = round(row["seconds"] / bound, 3) if bound else None
    row["cold_bound_s"] = round(row["cold_prompt_tokens"] / ev + row["generated_tokens"] / gen, 3)
    llm = row["stages"].get("llm")
    if llm and llm.get("prompt_tokens"):
        row["llm_ratio_to_bound"] = round(llm["seconds"] / (llm["prompt_tokens"] / ev), 3)


def timed(fn):
    """fn(on_update) with the time of the first update and of the LLM's order."""
    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def on_update(r):
        marks.setdefault("first", time.perf_counter() - t0)
        if r.pending != "the LLM is ranking":
            marks.setdefault("llm", time.perf_counter() - t0)
        if any(x.reason for x in r.items):
            marks.setdefault("first_reason", time.perf_counter() - t0)
            marks["streamed_reasons"] = max(marks.get("streamed_reasons", 0), sum(bool(x.reason) for x in r.items))

    out = fn(on_update)
    return out, time.perf_counter() - t0, marks


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 3)


def summary(rows: list[dict]) -> dict:
    out = {}
    for key in ("seconds", "first_list_s", "llm_order_s", "first_streamed_reason_s", "ratio_to_bound",
                "llm_ratio_to_bound"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            out[key] = {"p50": pct(vals, 0.5), "p95": pct(vals, 0.95), "max": round(max(vals), 3)}
    per_stage: dict[str, dict[str, list]] = {}
    for r in rows:
        for stage, v in r["stages"].items():
            for k, x in v.items():
                per_stage.setdefault(stage, {}).setdefault(k, []).append(x)
    out["stages_median"] = {s: {k: round(statistics.median(v), 3) for k, v in d.items()} for s, d in per_stage.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b")
    ap.add_argument("--users", type=int, default=5, help="ML-100k users for `recommend` (0: none)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--turns", type=int, default=len(TURNS), help="chat turns (of the 5)")
    ap.add_argument("--name", default=None, help="result file name (default chat-MODEL)")
    args = ap.parse_args()
    if args.threads:
        os.environ["MEDIAREC_LLM_THREADS"] = str(args.threads)


    load_before = os.getloadavg()
    rec = from_dataset("demo", llm=f"local:{args.llm}")
    rec.llm.cache.enabled = False  # every turn is computed
    rec.llm.llama  # load once, outside the timings
    session = ChatSession(rec, user="alice", k=5)
    from mediarec.rank.prompts import candidate_entries, history_entries

    hist = history_entries(session.history_pairs(), rec.reranker.settings.max_history)
    probe = rec.prompts.render("score", history=hist, request=TURNS[0],
                               candidates=candidate_entries(list(rec.catalog.items.values())[:20]))
    rates = bare_rates(rec.llm, probe)
    print("bare rates", rates, flush=True)

    chat_rows = []
    for text in TURNS[: args.turns]:
        def send(on_update, text=text):
            session.on_update = on_update
            return session.send(text)

        reply, secs, marks = timed(send)
        if reply.result is None:
            print(f"turn {text!r}: {reply.kind}: {reply.text}", flush=True)
            continue
        row = {"turn": text} | turn_row(reply.result, secs, marks)
        chat_rows.append(row)
        print(row, flush=True)

    rec_rows = []
    if args.users:
        ml = from_dataset("movielens-100k", data_dir=args.data_dir, llm=f"local:{args.llm}")
        ml.llm.cache.enabled = False
        users = [u for u in ml.catalog.users() if len(ml.catalog.history(u)) >= 20][: args.users]
        for u in users:
            ml.llm.llama.n_tokens = 0  # each user arrives cold (another user's prompt shares only the system part)
            result, secs, marks = timed(lambda cb, u=u: ml.recommend(user=u, k=10, on_update=cb))
            row = {"user": u} | turn_row(result, secs, marks)
            rec_rows.append(row)
            print(row, flush=True)

    # The load moves (other jobs share the cores): the bare rates again, and the bound at their mean.
    rates_after = bare_rates(rec.llm, probe)
    mean_rates = {k: (rates[k] + rates_after[k]) / 2 for k in rates}
    for row in chat_rows + rec_rows:
        add_bounds(row, mean_rates)
    follow = chat_rows[1:]
    record(args.name or f"chat-{args.llm}", {
        "model": args.llm, "threads": rec.llm.n_threads, "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "note": "2 shared cores; other sessions' jobs (tests, training) ran at the same time: see load_avg",
        "bare_before": {k: round(v, 1) for k, v in rates.items()},
        "bare_after": {k: round(v, 1) for k, v in rates_after.items()},
        "bare_mean": {k: round(v, 1) for k, v in mean_rates.items()},
        "chat": {"turns": len(chat_rows), "all": summary(chat_rows) if chat_rows else {},
                 "first_turn_s": chat_rows[0]["seconds"] if chat_rows else None,
                 "follow_ups": summary(follow) if follow else {}, "rows": chat_rows},
        "recommend_ml100k": {"users": len(rec_rows), "all": summary(rec_rows) if rec_rows else {}, "rows": rec_rows},
        "targets": {"chat_turn_p50_s": 5.0, "follow_up_turn_s": 3.0, "first_visible_list_s": 0.5,
                    "explain_top5_s": 2.0, "single_pass_scoring_s": 3.0},
    })


if __name__ == "__main__":
    main()
