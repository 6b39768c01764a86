"""``mediarec eval --explanations N``: how trustworthy the reasons are, on N test users.

The product with the LLM stage (the same ``Recommender`` as the ``llm`` system, fitted on the test
phase's training catalog) recommends ``k`` items to each sampled test user from their test
history; every reason it shows went through the checker (:mod:`mediarec.rank.checker`). Reported:

* ``llm_pass_share``: the share of items the LLM was asked to explain that show an LLM reason
  (it passed the checker, first try or the one retry); ``first_try_pass_share`` without the retry;
* ``hallucinated_titles_per_100``: titles outside the history and the item (other candidates
  included) per 100 non-empty LLM reasons, first tries and retries;
* ``problems``: why LLM reasons failed, by kind;
* ``shown_pass_share``: the shown reasons (LLM or template) re-checked independently (the target is 1);
* evidence coverage: the share of shown items with a collaborative contributor, with any history
  title, with a shared genre, and the mean number of evidence elements per item;
* tokens and seconds of the explanation step per user (the ranking's own are not included; median
  and max too: the top k's reasons are what a user waits for);
* ``claims``: every claim of every shown reason (subject, genre, era, kind, "like Y", counts,
  "you liked", …; :class:`mediarec.rank.checker.Claim`) checked against the catalog and the user's
  liked history, counted checked and true in all, by source (``llm``, ``template``) and by kind;
  ``false_claims``: the first 20 false ones, with the reason;
* ``llm_share_of_asked``: the share of the reasons the LLM was asked for that it wrote (and that
  passed), ``llm_trimmed`` of them after a false last clause was cut.
"""

from __future__ import annotations

import json
import time
from statistics import median
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from mediarec.eval.split import Split, sample_users
from mediarec.rank.evidence import split_history


def explanation_metric(split: Split, llm: Any, provider: Any, n_users: int, seed: int = 0, k: int = 5,
                       n_candidates: int = 20, llm_weight: float | None = None, progress: bool = False,
                       phase: str = "test", partial: Path | None = None) -> dict:
    """Reason statistics over ``n_users`` sampled test users (see the module docstring);
    ``phase="valid"``: validation users, for working on the prompts without looking at test users;
    ``partial``: a JSON file rewritten after each user with the numbers so far (a long run on a
    busy machine still leaves what it measured)."""
    from mediarec.eval.systems import llm_system
    from mediarec.rank.explanations import tools_for

    rec = llm_system(llm, provider, n_candidates, llm_weight=llm_weight, name="llm-explain")
    rec.fit(split.fit_catalog(phase))
    _, checker = tools_for(rec)
    histories = split.histories(phase)
    users = sample_users([u for u in split.targets(phase) if histories.get(u)], n_users, seed)
    tot: Counter = Counter()
    problems: Counter = Counter()
    sources: Counter = Counter()
    cover: Counter = Counter()
    elements = 0
    claims: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (source, kind) -> [checked, true]
    false_examples: list[dict] = []
    shown_reasons: list[dict] = []  # every shown reason, for reading them
    explain_seconds: list[float] = []
    started = time.perf_counter()
    for n, u in enumerate(users, 1):
        res = rec.recommend(history=histories[u], k=k)
        ex = res.explanations
        for key in ("asked", "llm_passed", "first_try_passed", "trimmed", "checks", "written", "foreign_titles",
                    "other_candidates", "calls", "prompt_tokens", "completion_tokens"):
            tot[key] += ex.get(key, 0)
        tot["explain_seconds"] += ex.get("seconds", 0.0)
        problems.update(ex.get("problems", []))
        history, _ = split_history(rec.catalog.history_pairs(histories[u]))  # the liked items
        others = [c.item for c in res.candidates]
        explain_seconds.append(ex.get("seconds", 0.0))
        for r in res.items:
            sources[r.reason_source] += 1
            tot["shown"] += 1
            res_check = checker.check(r.reason, r.item, r.evidence, history, others)
            tot["shown_passed"] += res_check.passed
            shown_reasons.append({"user": u, "item": r.item.label, "source": r.reason_source, "reason": r.reason,
                                  "claims": len(res_check.claims), "false": len(res_check.false_claims)})
            for c in res_check.claims:
                claims[(r.reason_source, c.kind)][0] += 1
                claims[(r.reason_source, c.kind)][1] += c.true
                if not c.true and len(false_examples) < 20:
                    false_examples.append({"source": r.reason_source, "kind": c.kind, "reason": r.reason,
                                           "item": r.item.label, "why": c.why})
            cover["collab"] += bool(r.evidence.because)
            cover["history_title"] += bool(r.evidence.history_titles())
            cover["genre"] += bool(r.evidence.shared_genres)
            cover["any"] += bool(r.evidence.elements())
            elements += len(r.evidence.elements())
        if partial is not None:
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(_summary(llm, phase, users[:n], k, tot, sources, problems, cover, elements,
                                                   claims, false_examples, explain_seconds, started)
                                       | {"shown_reasons": shown_reasons}, indent=2) + "\n")
        if progress:
            print(f"\rexplanations: {n}/{len(users)} users", end="", flush=True)
    if progress:
        print()
    return _summary(llm, phase, users, k, tot, sources, problems, cover, elements, claims, false_examples,
                    explain_seconds, started) | {"shown_reasons": shown_reasons}


def _summary(llm, phase, users, k, tot, sources, problems, cover, elements, claims, false_examples,
             explain_seconds, started) -> dict:
    n_u, shown = max(len(users), 1), max(tot["shown"], 1)
    return {
        "llm": llm.spec, "phase": phase, "users": len(users), "k": k, "items_shown": tot["shown"],
        "llm_asked": tot["asked"],
        "llm_pass_share": tot["llm_passed"] / max(tot["asked"], 1),
        "first_try_pass_share": tot["first_try_passed"] / max(tot["asked"], 1),
        "llm_reasons_checked": tot["checks"], "llm_reasons_nonempty": tot["written"],
        "hallucinated_titles_per_100": 100 * tot["foreign_titles"] / max(tot["written"], 1),
        "other_candidate_titles_per_100": 100 * tot["other_candidates"] / max(tot["written"], 1),
        "problems": dict(problems.most_common()),
        "reason_source": dict(sources),
        "shown_pass_share": tot["shown_passed"] / shown,
        "evidence_coverage": {key: cover[key] / shown for key in ("any", "collab", "history_title", "genre")}
        | {"mean_elements": elements / shown},
        "explain_calls_per_user": tot["calls"] / n_u,
        "prompt_tokens_per_user": tot["prompt_tokens"] / n_u,
        "completion_tokens_per_user": tot["completion_tokens"] / n_u,
        "explain_seconds_per_user": tot["explain_seconds"] / n_u,
        "explain_seconds_median": float(median(explain_seconds)) if explain_seconds else 0.0,
        "explain_seconds_max": max(explain_seconds, default=0.0),
        "llm_trimmed": tot["trimmed"],
        "llm_share_of_asked": sources.get("llm", 0) / max(tot["asked"], 1),
        "claims": _claim_table(claims),
        "false_claims": false_examples,
        "wall_seconds": time.perf_counter() - started,
    }


def _claim_table(claims: dict[tuple[str, str], list[int]]) -> dict:
    """Claims checked and true: in all, by source (llm, template), by kind, by source and kind."""
    def cell(rows) -> dict:
        checked, true = sum(r[0] for r in rows), sum(r[1] for r in rows)
        return {"checked": checked, "true": true, "share_true": true / checked if checked else None}

    sources = sorted({s for s, _ in claims})
    kinds = sorted({k for _, k in claims})
    return {"all": cell(claims.values()),
            "by_source": {s: cell([v for (s2, _), v in claims.items() if s2 == s]) for s in sources},
            "by_kind": {k: cell([v for (_, k2), v in claims.items() if k2 == k]) for k in kinds},
            "by_source_kind": {f"{s}/{k}": cell([v]) for (s, k), v in sorted(claims.items())}}


def markdown(m: dict, command: str) -> str:
    """The report section."""
    cov = m["evidence_coverage"]
    lines = [
        "", f"## Explanations ({m['llm']}, {m['users']} test users, top {m['k']})", "",
        f"Command: `{command}`", "",
        "| metric | value |", "|---|---|",
        f"| LLM reasons passing the checker (after one retry) | {m['llm_pass_share']:.1%} of {m['llm_asked']} asked |",
        f"| ... on the first try | {m['first_try_pass_share']:.1%} |",
        f"| hallucinated titles per 100 non-empty LLM reasons | {m['hallucinated_titles_per_100']:.1f} "
        f"({m['other_candidate_titles_per_100']:.1f} of them other candidates; {m['llm_reasons_nonempty']} "
        f"non-empty of {m['llm_reasons_checked']} checked) |",
        f"| shown reasons passing the checker | {m['shown_pass_share']:.1%} |",
        f"| reason source of shown items | {', '.join(f'{k}: {v}' for k, v in m['reason_source'].items())} |",
        f"| evidence coverage: any / collaborative / history title / shared genre | {cov['any']:.0%} / "
        f"{cov['collab']:.0%} / {cov['history_title']:.0%} / {cov['genre']:.0%} "
        f"(mean {cov['mean_elements']:.1f} elements) |",
        f"| explanation tokens per user (prompt / completion) | {m['prompt_tokens_per_user']:.0f} / "
        f"{m['completion_tokens_per_user']:.0f} |",
        f"| explanation seconds per user | {m['explain_seconds_per_user']:.1f} ({m['explain_calls_per_user']:.1f} calls) |",
        f"| shown reasons written by the LLM, of those it was asked for | {m['llm_share_of_asked']:.1%} "
        f"({m['llm_trimmed']} after cutting a false last clause) |",
        f"| reasons of the top {m['k']}: seconds per user, median / max | {m['explain_seconds_median']:.2f} / "
        f"{m['explain_seconds_max']:.2f} |",
        "", "Why LLM reasons failed: " + (", ".join(f"{k} ({v})" for k, v in m["problems"].items()) or "none"), "",
        "Claims in the shown reasons, each checked against the catalog and the user's liked history "
        "(rank/checker.py):", "",
        "| claims | checked | true | share true |", "|---|---|---|---|",
    ]
    c = m["claims"]
    rows = [("all", c["all"])] + [(f"source: {k}", v) for k, v in c["by_source"].items()] + \
        [(f"kind: {k}", v) for k, v in c["by_kind"].items()]
    lines += [f"| {name} | {v['checked']} | {v['true']} | "
              + (f"{v['share_true']:.1%}" if v["share_true"] is not None else "-") + " |" for name, v in rows]
    if m["false_claims"]:
        lines += ["", "False claims (first 20):", ""] + [
            f"- {x['source']} / {x['kind']}: {x['item']}: \"{x['reason']}\" ({x['why']})" for x in m["false_claims"]]
    lines.append("")
    return "\n".join(lines)


def write(m: dict, out: Path, command: str) -> None:
    """``explanations.json`` beside the report, and the section appended to ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "explanations.json").write_text(json.dumps(m | {"command": command}, indent=2) + "\n")
    with open(out / "report.md", "a", encoding="utf-8") as f:
        f.write(markdown(m, command))
