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
* tokens and seconds of the explanation step per user (the ranking's own are not included).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from mediarec.eval.split import Split, sample_users


def explanation_metric(split: Split, llm: Any, provider: Any, n_users: int, seed: int = 0, k: int = 5,
                       n_candidates: int = 20, llm_weight: float | None = None, progress: bool = False,
                       phase: str = "test") -> dict:
    """Reason statistics over ``n_users`` sampled test users (see the module docstring);
    ``phase="valid"``: validation users, for working on the prompts without looking at test users."""
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
    started = time.perf_counter()
    for n, u in enumerate(users, 1):
        res = rec.recommend(history=histories[u], k=k)
        ex = res.explanations
        for key in ("asked", "llm_passed", "first_try_passed", "checks", "written", "foreign_titles",
                    "other_candidates", "calls", "prompt_tokens", "completion_tokens"):
            tot[key] += ex.get(key, 0)
        tot["explain_seconds"] += ex.get("seconds", 0.0)
        problems.update(ex.get("problems", []))
        history = [it for it, _ in rec.catalog.history_pairs(histories[u])]
        others = [c.item for c in res.candidates]
        for r in res.items:
            sources[r.reason_source] += 1
            tot["shown"] += 1
            tot["shown_passed"] += checker.check(r.reason, r.item, r.evidence, history, others).passed
            cover["collab"] += bool(r.evidence.because)
            cover["history_title"] += bool(r.evidence.history_titles())
            cover["genre"] += bool(r.evidence.shared_genres)
            cover["any"] += bool(r.evidence.elements())
            elements += len(r.evidence.elements())
        if progress:
            print(f"\rexplanations: {n}/{len(users)} users", end="", flush=True)
    if progress:
        print()
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
        "wall_seconds": time.perf_counter() - started,
    }


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
        "", "Why LLM reasons failed: " + (", ".join(f"{k} ({v})" for k, v in m["problems"].items()) or "none"), "",
    ]
    return "\n".join(lines)


def write(m: dict, out: Path, command: str) -> None:
    """``explanations.json`` beside the report, and the section appended to ``report.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "explanations.json").write_text(json.dumps(m | {"command": command}, indent=2) + "\n")
    with open(out / "report.md", "a", encoding="utf-8") as f:
        f.write(markdown(m, command))
