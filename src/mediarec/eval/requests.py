"""The request benchmark (``mediarec eval --requests``): are requests honoured, and do they help?

For each evaluated user a request is written from the held-out target's own metadata, so the
target satisfies it, in each of these types (where the catalogue allows):

* ``genre``: one of the target's genres ("a comedy", "something funny");
* ``decade``: the target's decade ("something from the 80s");
* ``tag``: one of the target's tags, where the catalogue has tags ("something atmospheric");
* ``kind``: the target's kind, for catalogues with more than one ("an album");
* ``negation``: a genre the target lacks ("no horror"), drawn from the genres of the user's
  history-only top 10 (what a user would object to), else from the catalogue's;
* ``like``: "like X but Y", X the user's most recent liked item, Y a genre of the target X lacks
  (else the target's decade, else one of its genres).

Wordings come from a few templates, drawn with a seed per user and type. The system ranks with
the request exactly as :meth:`Recommender.recommend` does (:func:`retrieval_inputs`, the same
retriever), and without it. Per type: HR@10 and NDCG@10 of the target with and without the
request, with 95% bootstrap intervals and a paired test, and **adherence**: the share of the top
10 that satisfies what the request meant, checked against catalogue metadata (the generated
truth, not the parse, so a misread request counts against adherence). Tags are soft (they steer
the text query, they do not filter), so their adherence is reported apart from the checkable types.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel

from mediarec.catalog.model import Catalog, Item
from mediarec.errors import ConfigError
from mediarec.eval.report import json_safe
from mediarec.eval.metrics import hit_at_k, ndcg_at_k, rank_of_target, tie_keys, top_k
from mediarec.eval.split import Split
from mediarec.eval.stats import bootstrap_ci, bootstrap_index, paired_bootstrap_p
from mediarec.infra.atomic import atomic_write_text
from mediarec.rank.request import Constraints, parse_request, retrieval_inputs, vocabulary

REQUEST_TYPES = ("genre", "decade", "tag", "kind", "negation", "like")
SOFT_TYPES = ("tag",)  # steer the ranking, filter nothing: adherence is not promised
K = 10

# How people name a genre, and how they ask for more of it; anything else is its name.
GENRE_WORDS = {"Comedy": ("comedy", "funny"), "Horror": ("horror", "scary"), "Sci-Fi": ("sci-fi", "science fiction"),
               "Romance": ("romance", "romantic"), "Animation": ("animated", "animation"),
               "Thriller": ("thriller", "suspenseful"), "Documentary": ("documentary",),
               "Children's": ("kids", "children's"), "Children": ("kids", "children's")}
MORE_OF = {"Comedy": "funnier", "Horror": "scarier", "Romance": "more romantic", "Thriller": "more thrilling"}
KIND_WORDS = {"movie": "film", "series": "series", "track": "song", "album": "album", "artist": "artist",
              "video": "video"}
TEMPLATES = {
    "genre": ("something {g}", "I'm in the mood for something {g}", "show me something {g} please", "{g}, please"),
    "decade": ("something from the {d}", "anything from the {d}", "what do you have from the {d}?"),
    "tag": ("something {t}", "I'd like something {t}", "anything {t}?"),
    "kind": ("an {k}", "give me a {k}", "I want a {k} this time"),
    "negation": ("no {g}", "nothing {g} please", "anything but not {g}", "something without {g}"),
    "like": ("something like {x} but {y}", "like {x} but {y}", "similar to {x} but {y}"),
}


class RequestCase(BaseModel):
    """One generated request: its type, its words, and what it means (checked on metadata)."""

    user: str
    type: str
    text: str
    truth: Constraints  # genres, kinds, years, exclusions, tags the words stand for


def satisfies(truth: Constraints, item: Item) -> bool:
    """Whether ``item`` meets what a request means: every hard part, and one of its tags if any."""
    if not truth.allows(item):
        return False
    return not truth.tags or bool({t.lower() for t in truth.tags} & {t.lower() for t in item.tags})


def _decade_words(year: int) -> str:
    start = year - year % 10
    return f"{start % 100:02d}s" if start < 2000 else f"{start}s"


def _genre_words(genre: str, rng: random.Random) -> str:
    return rng.choice(GENRE_WORDS.get(genre, (genre.lower(),)))


def make_cases(user: str, target: Item, history: Sequence[Item], catalog: Catalog, baseline_top: Sequence[Item],
               seed: int, genres: Sequence[str], usable_tags: set[str]) -> list[RequestCase]:
    """The requests a user gets (one per type that the target's metadata allows), seeded."""
    cases = []
    kinds = {it.kind for it in catalog.items.values()}

    def add(kind: str, template_args: dict[str, str], truth: Constraints) -> None:
        rng = random.Random(f"{seed}:{user}:{kind}:wording")
        text = rng.choice(TEMPLATES[kind]).format(**template_args)
        cases.append(RequestCase(user=user, type=kind, text=text, truth=truth))

    rng = random.Random(f"{seed}:{user}:choice")
    if target.genres:
        g = rng.choice(sorted(target.genres))
        add("genre", {"g": _genre_words(g, random.Random(f"{seed}:{user}:g"))}, Constraints(genres=[g]))
    if target.year:
        lo = target.year - target.year % 10
        add("decade", {"d": _decade_words(target.year)}, Constraints(year_min=lo, year_max=lo + 9))
    tags = sorted(t.lower() for t in target.tags if t.lower() in usable_tags)
    if tags:
        t = rng.choice(tags)
        add("tag", {"t": t}, Constraints(tags=[t]))
    if len(kinds) > 1:
        add("kind", {"k": KIND_WORDS.get(target.kind, target.kind)}, Constraints(kinds=[target.kind]))
    own = set(target.genres)
    objected = sorted({g for it in baseline_top for g in it.genres if g in genres} - own)
    pool = objected or sorted(set(genres) - own)
    if pool:
        g = rng.choice(pool)
        add("negation", {"g": _genre_words(g, random.Random(f"{seed}:{user}:n"))}, Constraints(exclude_genres=[g]))
    if history:
        x = history[-1]
        new = sorted(set(target.genres) - set(x.genres))
        if new:
            g = rng.choice(new)
            y, truth = MORE_OF.get(g, f"more {_genre_words(g, rng)}"), Constraints(genres=[g])
        elif target.year and x.year and target.year // 10 != x.year // 10:
            lo = target.year - target.year % 10
            y, truth = f"from the {_decade_words(target.year)}", Constraints(year_min=lo, year_max=lo + 9)
        elif target.genres:
            g = rng.choice(sorted(target.genres))
            y, truth = f"more {_genre_words(g, rng)}", Constraints(genres=[g])
        else:
            y, truth = "", None
        if truth is not None:
            add("like", {"x": x.label, "y": y}, truth)
    return cases


def run_requests(system: Any, split: Split, users: Sequence[str], seed: int = 0, bootstrap: int = 1000,
                 types: Sequence[str] = REQUEST_TYPES) -> dict[str, Any]:
    """Rank every user's target with and without their requests; metrics per request type.

    ``system``: a fitted retrieval :class:`~mediarec.recommender.Recommender` (no LLM stage, no
    profile): its ranking with a request is ``retriever.score_all`` with the parsed request, as
    ``recommend`` retrieves."""
    if getattr(system, "retriever", None) is None or getattr(system, "reranker", None) is not None \
            or getattr(system, "profile_source", None) is not None:
        raise ConfigError(f"the request benchmark ranks with a fitted retrieval system; {system.name!r} is not one")
    retriever = system.retriever
    catalog = retriever.catalog
    item_ids = list(retriever.index.item_ids)
    pos = {i: k for k, i in enumerate(item_ids)}
    keys = tie_keys(item_ids, seed)
    genres = sorted({g for it in catalog.items.values() for g in it.genres})
    usable_tags = _tags_read_as_tags(catalog)
    rows: list[dict[str, Any]] = []
    for u in users:
        target_id = split.test[u]
        hist = split.test_history[u]
        excluded = [pos[i] for i in split.seen[u] if i != target_id and i in pos]

        def ranked(scores: np.ndarray) -> tuple[float, list[Item]]:
            s = np.where(np.isfinite(scores), scores, -np.inf)
            s[excluded] = -np.inf
            top = [catalog.items[item_ids[j]] for j in top_k(s, keys, K)]
            return rank_of_target(s, keys, pos[target_id]) if target_id in pos else math.inf, top

        base_rank, base_top = ranked(retriever.score_all(hist))
        liked = [catalog.items[x.item] for x in hist if x.is_positive and x.item in catalog.items]
        for case in make_cases(u, catalog.items[target_id], liked, catalog, base_top, seed, genres, usable_tags):
            if case.type not in types:
                continue
            parsed, text = retrieval_inputs(case.text, catalog, has_history=bool(hist))
            rank, top = ranked(retriever.score_all(hist, query=text, constraints=parsed))
            rows.append({"user": u, "type": case.type, "request": case.text, "parsed": parsed.describe(),
                         "rank": rank, "base_rank": base_rank,
                         "adherence": _share(case.truth, top), "base_adherence": _share(case.truth, base_top)})
    return summarise(rows, bootstrap, seed)


def _tags_read_as_tags(catalog: Catalog) -> set[str]:
    """The catalogue's tags that a request reads back as that tag alone ("dark comedy" reads as the
    genre Comedy plus "dark", so it cannot make a tag request)."""
    out = set()
    for t in vocabulary(catalog).tags:
        c = parse_request(f"something {t}", catalog)
        if c.tags == [t] and not c.is_hard and not c.reference:
            out.add(t)
    return out


def _share(truth: Constraints, top: Sequence[Item]) -> float:
    """The share of a top list that satisfies the request (nan for an empty list)."""
    return sum(satisfies(truth, it) for it in top) / len(top) if top else math.nan


def summarise(rows: list[dict[str, Any]], bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per type and over the checkable types: means, 95% intervals, paired p of request vs none."""
    out: dict[str, Any] = {"k": K, "types": {}, "examples": {}}
    groups = {t: [r for r in rows if r["type"] == t] for t in REQUEST_TYPES}
    groups["checkable"] = [r for r in rows if r["type"] not in SOFT_TYPES]
    for name, rs in groups.items():
        if not rs:
            continue
        rank = np.array([r["rank"] for r in rs], dtype=float)
        base = np.array([r["base_rank"] for r in rs], dtype=float)
        per = {"hr@10": hit_at_k(rank, K), "ndcg@10": ndcg_at_k(rank, K),
               "hr@10_history_only": hit_at_k(base, K), "ndcg@10_history_only": ndcg_at_k(base, K),
               "adherence": np.array([r["adherence"] for r in rs], dtype=float),
               "adherence_history_only": np.array([r["base_adherence"] for r in rs], dtype=float)}
        idx = bootstrap_index(len(rs), bootstrap, seed) if bootstrap else None
        m: dict[str, Any] = {"n": len(rs)}
        for key, v in per.items():
            ok = v[np.isfinite(v)]
            m[key] = float(ok.mean()) if ok.size else math.nan
            m[f"{key}_ci95"] = list(bootstrap_ci(np.nan_to_num(v, nan=0.0), bootstrap, seed, index=idx))
        m["hr_ratio"] = m["hr@10"] / m["hr@10_history_only"] if m["hr@10_history_only"] > 0 else math.nan
        pidx = bootstrap_index(len(rs), bootstrap, seed + 1) if bootstrap else None
        m["p_hr@10"] = paired_bootstrap_p(per["hr@10"], per["hr@10_history_only"], bootstrap, seed, index=pidx)
        m["p_ndcg@10"] = paired_bootstrap_p(per["ndcg@10"], per["ndcg@10_history_only"], bootstrap, seed, index=pidx)
        out["types"][name] = m
        if name in REQUEST_TYPES:
            out["examples"][name] = [{"request": r["request"], "parsed": r["parsed"]} for r in rs[:3]]
    return out


def markdown(summary: dict[str, Any], system: str, command: str) -> str:
    """The report section: one table row per request type."""
    def ci(m, key):
        lo, hi = m[f"{key}_ci95"]
        return f"{m[key]:.3f} [{lo:.3f}, {hi:.3f}]"

    lines = ["", f"## Requests ({system})", "",
             "Each user gets requests written from the held-out target's metadata (see "
             "`mediarec/eval/requests.py`); the target satisfies them. Adherence: share of the top 10 "
             "satisfying what the request means, by catalogue metadata. `tag` is soft (steers, does not "
             "filter); `checkable` pools every other type.", "",
             "| type | n | HR@10 request | HR@10 history only | ratio | NDCG@10 request | NDCG@10 history only "
             "| p (HR) | adherence | adherence history only |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in summary["types"].items():
        lines.append(f"| {name} | {m['n']} | {ci(m, 'hr@10')} | {ci(m, 'hr@10_history_only')} | "
                     f"{m['hr_ratio']:.2f} | {ci(m, 'ndcg@10')} | {ci(m, 'ndcg@10_history_only')} | "
                     f"{m['p_hr@10']:.4f} | {ci(m, 'adherence')} | {ci(m, 'adherence_history_only')} |")
    lines += ["", "Examples (request → how it was read):", ""]
    for name, ex in summary["examples"].items():
        for e in ex[:2]:
            lines.append(f"- {name}: {e['request']!r} → {e['parsed']}")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def write_requests(system: Any, split: Split, users: Sequence[str], protocol: Any, out: Path,
                   command: str) -> dict[str, Any]:
    """Run the benchmark for ``system`` (fitted by the harness on the test phase's training log),
    write ``requests.json`` and add its section to ``report.md``."""
    if protocol.mode != "full":
        raise ConfigError("the request benchmark ranks every item: use --protocol full")
    summary = run_requests(system, split, users, seed=protocol.seed, bootstrap=protocol.bootstrap)
    summary.update(system=system.name, command=command, users=len(users))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "requests.json", json.dumps(json_safe(summary), indent=2) + "\n")
    report = out / "report.md"
    before = report.read_text(encoding="utf-8") if report.exists() else ""
    atomic_write_text(report, before + markdown(summary, system.name, command))
    return summary
