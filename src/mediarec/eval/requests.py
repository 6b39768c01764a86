"""The request benchmark (``mediarec eval --requests``): are requests honoured, and do they help?

For each evaluated user a request is written from the held-out target's own metadata, so the
target satisfies it, in each of these types (where the catalogue allows):

* ``genre``: one of the target's genres ("a comedy", "something funny");
* ``decade``: the target's decade ("something from the 80s");
* ``tag``: one of the target's tags, where the catalogue has tags ("something atmospheric");
* ``kind``: the target's kind, for catalogues with more than one ("an album");
* ``negation``: a genre the target lacks ("no horror", "nothing with horror", "anything but
  horror", "no horror please", "not another horror film"), drawn from the genres of the user's
  history-only top 10 (what a user would object to), else from the catalogue's;
* ``relative``: "something older" (or "newer") when the target is older (newer) than the median
  year of the user's liked history, which is what the request is read against; the truth is that
  year bound. A target from the median year itself gets "funnier" / "scarier" where it has the genre;
* ``like``: "like X but Y", X the user's most recent liked item, Y a genre of the target X lacks
  (else the target's decade, else one of its genres);
* ``paraphrase``: one of the target's genres in everyday words that the rule parser's table does
  not hold ("something to make me laugh"): what reading a request with the LLM is for.

Wordings come from a few templates, drawn with a seed per user and type. The system ranks with
the request exactly as :meth:`Recommender.recommend` does (:func:`retrieval_inputs`, the same
retriever), and without it. Per type: HR@10 and NDCG@10 of the target with and without the
request, with 95% bootstrap intervals and a paired test, and **adherence**: the share of the top
10 that satisfies what the request meant, checked against catalogue metadata (the generated
truth, not the parse, so a misread request counts against adherence). Tags are soft (they steer
the text query, they do not filter), so their adherence is reported apart from the checkable types;
so are paraphrases, which the rules leave as soft text by design.

**Variants** (``--request-llm``): the same requests read by the rules alone or by the rules plus
the LLM (:mod:`mediarec.rank.request_llm`), each ranked by retrieval alone or with the LLM
reranking the top 20 with the request in its prompt, as ``recommend`` does. Each variant is
compared with the rules-only retrieval on the same requests (paired), with the seconds that
reading and reranking took.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from pydantic import BaseModel

from mediarec.catalog.model import Catalog, Item, liked_flags
from mediarec.errors import ConfigError
from mediarec.eval.report import json_safe
from mediarec.eval.metrics import hit_at_k, ndcg_at_k, rank_of_target, tie_keys, top_k
from mediarec.eval.split import Split
from mediarec.eval.stats import bootstrap_ci, bootstrap_index, paired_bootstrap_p
from mediarec.infra.atomic import atomic_write_text
from mediarec.rank.request import Constraints, character_tiers, parse_request, retrieval_inputs, vocabulary

REQUEST_TYPES = ("genre", "decade", "tag", "kind", "negation", "relative", "like", "paraphrase")
# Reported apart from the pooled "checkable" row: tags steer and filter nothing, and paraphrases are
# words the rule parser does not know by design (the LLM's reading is measured on them).
SOFT_TYPES = ("tag", "paraphrase")
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
    "negation": ("no {g}", "nothing {g} please", "something without {g}", "nothing with {g}", "anything but {g}",
                 "no {g} please", "not another {g} film"),
    "relative": ("something {r}", "{r}", "{r} please", "show me something {r}"),
    "like": ("something like {x} but {y}", "like {x} but {y}", "similar to {x} but {y}"),
    "paraphrase": ("{p}", "I'd like {p}", "in the mood for {p}"),
}
# Everyday words for a genre that GENRE_SYNONYMS (the rule parser's table) does not hold, and that
# name no other genre, decade or kind: tests/test_request_retrieval.py checks the rules leave them unread.
PARAPHRASES = {
    "Comedy": ("something to make me laugh", "something that cracks me up"),
    "Horror": ("something that will give me nightmares", "something to watch with the lights on"),
    "Sci-Fi": ("something set in outer space or the far future", "something with robots or aliens"),
    "Romance": ("a story of two people falling in love", "something for date night"),
    "Action": ("lots of explosions, chases and fist fights", "non-stop shootouts and stunts"),
    "Thriller": ("something that keeps me on the edge of my seat", "a nail-biter"),
    "Drama": ("something serious and moving", "a slow, emotional character study"),
    "War": ("something about soldiers at the front", "a battlefield story"),
    "Western": ("cowboys and gunfights on the frontier", "something with cowboys"),
    "Musical": ("lots of singing and dancing", "something with show tunes"),
    "Crime": ("something about a heist or the mob", "cops and robbers"),
    "Mystery": ("a puzzle where I guess who did it", "a detective solving a case"),
    "Fantasy": ("dragons, wizards and magic", "something with magic and mythical creatures"),
    "Adventure": ("a quest to far-off lands", "an expedition into the unknown"),
    "Documentary": ("real events told by the people who lived them", "something non-fiction"),
    "Animation": ("something hand-drawn or made by Pixar", "a cartoon-style picture"),
    "Children's": ("something my six-year-old can watch", "something for a kid's birthday party"),
}

# The tuning set for reading paraphrases (the similarity thresholds, the LLM's score threshold):
# other everyday words for the same genres, in other framings, never used by the benchmark, so what
# is tuned on them is measured on PARAPHRASES above. tests/test_request_scoring.py checks they too
# are words the rules leave unread.
DEV_PARAPHRASES = {
    "Comedy": ("a real laugh riot", "jokes and gags from start to finish"),
    "Horror": ("ghosts, demons and haunted houses", "a film that makes me jump out of my seat"),
    "Sci-Fi": ("spaceships and time travel", "a story about the distant future of humanity"),
    "Romance": ("a love affair between two strangers", "something sweet for Valentine's day"),
    "Action": ("car chases and big explosions", "a hero fighting off an army of bad guys"),
    "Thriller": ("a tense cat-and-mouse chase", "something full of suspense and twists"),
    "Drama": ("a tearjerker about loss and grief", "a powerful story about ordinary people's struggles"),
    "War": ("a story about the second world war", "soldiers in combat"),
    "Western": ("gunslingers in the wild west", "a sheriff and outlaws in a dusty town"),
    "Musical": ("a story told through songs", "Broadway-style song and dance numbers"),
    "Crime": ("a bank robbery gone wrong", "drug lords and corrupt cops"),
    "Mystery": ("an unsolved murder and a sleuth", "clues for the viewer to piece together"),
    "Fantasy": ("elves, quests and enchanted kingdoms", "a sword and sorcery epic"),
    "Adventure": ("treasure hunting in the jungle", "explorers on a daring journey"),
    "Documentary": ("a true story filmed with real footage", "interviews with experts about history"),
    "Animation": ("stop-motion puppets or drawn characters", "something from Studio Ghibli"),
    "Children's": ("something suitable for toddlers", "a film for my little nephew"),
}
DEV_TEMPLATES = ("{p}", "could you find me {p}", "looking for {p} tonight")


def dev_paraphrase_cases() -> list[tuple[str, str]]:
    """(genre, request) for every tuning paraphrase in every tuning framing."""
    return [(g, t.format(p=p)) for g, ps in DEV_PARAPHRASES.items() for p in ps for t in DEV_TEMPLATES]


class RequestCase(BaseModel):
    """One generated request: its type, its words, and what it means (checked on metadata)."""

    user: str
    type: str
    text: str
    truth: Constraints  # genres, kinds, years, exclusions, tags the words stand for
    keep: list[str] = []  # "like X but Y": X's genres, whose character the list should keep


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

    def add(kind: str, template_args: dict[str, str], truth: Constraints, keep: Sequence[str] = ()) -> None:
        rng = random.Random(f"{seed}:{user}:{kind}:wording")
        text = rng.choice(TEMPLATES[kind]).format(**template_args)
        cases.append(RequestCase(user=user, type=kind, text=text, truth=truth, keep=list(keep)))

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
    years = sorted(it.year for it in history if it.year)
    if years and target.year:
        median = years[len(years) // 2]
        g_more = sorted(g for g in target.genres if g in MORE_OF and g in ("Comedy", "Horror"))
        if target.year < median:
            add("relative", {"r": "older"}, Constraints(year_max=median - 1))
        elif target.year > median:
            add("relative", {"r": "newer"}, Constraints(year_min=median + 1))
        elif g_more:
            add("relative", {"r": MORE_OF[g_more[0]]}, Constraints(genres=[g_more[0]]))
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
            add("like", {"x": x.label, "y": y}, truth, keep=x.genres)
    said = sorted(g for g in target.genres if g in PARAPHRASES)
    if said:
        g = rng.choice(said)
        add("paraphrase", {"p": random.Random(f"{seed}:{user}:p").choice(PARAPHRASES[g])}, Constraints(genres=[g]))
    return cases


@dataclass(frozen=True)
class RequestVariant:
    """How the benchmark reads and ranks a request: ``parse`` (None = the rules alone) and a
    ``reranker`` that orders the top ``pool`` with the request in its prompt (None = retrieval)."""

    name: str
    parse: Callable[[str, Catalog], Constraints] | None = None
    reranker: Any = None
    pool: int = 20
    similarity: bool = True  # words left unread go to the MiniLM fallback (as recommend reads them)
    parse_with_embed: bool = False  # ``parse(embed)`` gives the reader (one that uses the embedder itself)


RULES = RequestVariant("rules")


def llm_variants(llm: Any, llm_weight: float, pool: int = 20, prompts: Any = None,
                 history: int | None = None) -> list[RequestVariant]:
    """Rules alone, rules + LLM reading, and each of them with the LLM reranking: item 3 of the
    requests issue, every variant on the same requests."""
    from mediarec.rank.request_llm import llm_parse_request
    from mediarec.rank.reranker import Reranker, RerankSettings

    def by_llm(text: str, catalog: Catalog) -> Constraints:
        return llm_parse_request(text, catalog, llm, prompts)

    rerank = Reranker(llm, prompts, RerankSettings(llm_weight=llm_weight,
                                                   **({"max_history": history} if history else {})))
    return [RULES, RequestVariant("rules+llm", parse=by_llm),
            RequestVariant("rules, llm rerank", reranker=rerank, pool=pool),
            RequestVariant("rules+llm, llm rerank", parse=by_llm, reranker=rerank, pool=pool)]


def reading_variants(llm: Any, prompts: Any = None) -> list[RequestVariant]:
    """Ways to read a request, ranked by retrieval alone: the rules with the MiniLM fallback (the
    default, the reference), the rules alone, the rules plus the LLM scoring the catalogue's words
    (:func:`~mediarec.rank.request_llm.llm_score_request`), and the rules, then the fallback, then
    the LLM for what both left unread."""
    from mediarec.rank.request import read_by_similarity
    from mediarec.rank.request_llm import llm_score_request

    def by_score(text: str, catalog: Catalog) -> Constraints:
        return llm_score_request(text, catalog, llm, prompts)

    def similarity_then_score(embed: Callable) -> Callable[[str, Catalog], Constraints]:
        def read(text: str, catalog: Catalog) -> Constraints:
            c = read_by_similarity(parse_request(text, catalog), catalog, embed)
            return llm_score_request(text, catalog, llm, prompts, read=c) if c.unread else c
        return read

    return [RULES, RequestVariant("rules only", similarity=False),
            RequestVariant("rules+llm-score", parse=by_score, similarity=False),
            RequestVariant("rules+similarity+llm-score", parse=similarity_then_score, similarity=False,
                           parse_with_embed=True)]


def run_requests(system: Any, split: Split, users: Sequence[str], seed: int = 0, bootstrap: int = 1000,
                 types: Sequence[str] = REQUEST_TYPES, variants: Sequence[RequestVariant] = (RULES,),
                 progress: bool = False, variant_users: int | None = None, phase: str = "test") -> dict[str, Any]:
    """Rank every user's target with and without their requests; metrics per request type.

    ``system``: a fitted retrieval :class:`~mediarec.recommender.Recommender` (no LLM stage, no
    profile): its ranking with a request is ``retriever.score_all`` with the parsed request, as
    ``recommend`` retrieves. ``variants``: ways to read and rank each request, the first the
    reference (its metrics are the summary's ``types``; the others' are under ``variants``, paired
    with it); ``variant_users``: the other variants run for the first that many users only (LLM
    time), the reference for every user. ``phase``: "valid" ranks the validation targets (a system
    fitted on ``split.fit_catalog("valid")``), for choosing settings without the test users."""
    from mediarec.infra.progress import counting

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
    embed = retriever.index.embedder.embed  # the fallback reading of unread words, as recommend reads them

    def learned(hist: Sequence[Any], scores: np.ndarray) -> np.ndarray:
        """``scores`` re-ordered by the system's learned stage where one serves (as ``recommend``)."""
        return system.learned_order(hist, scores) if hasattr(system, "learned_order") else scores

    rows: list[dict[str, Any]] = []
    with counting(progress, unit="users") as bar:
        task = bar.add_task(f"requests ({', '.join(v.name for v in variants)})", total=len(users))
        for n_user, u in enumerate(users):
            target_id = split.targets(phase)[u]
            hist = split.histories(phase)[u]
            excluded = [pos[i] for i in split.seen[u] if i != target_id and i in pos]

            def masked(scores: np.ndarray) -> np.ndarray:
                s = np.where(np.isfinite(scores), scores, -np.inf)
                s[excluded] = -np.inf
                return s

            def ranked(s: np.ndarray) -> tuple[float, list[Item]]:
                top = [catalog.items[item_ids[j]] for j in top_k(s, keys, K)]
                return rank_of_target(s, keys, pos[target_id]) if target_id in pos else math.inf, top

            base_rank, base_top = ranked(masked(learned(hist, retriever.score_all(hist))))
            # the one definition of liked (no dislike, no rating below the user's midpoint)
            liked = [catalog.items[x.item] for x, ok in zip(hist, liked_flags(hist)) if ok and x.item in catalog.items]
            for case in make_cases(u, catalog.items[target_id], liked, catalog, base_top, seed, genres, usable_tags):
                if case.type not in types:
                    continue
                for v in variants:
                    if v is not variants[0] and variant_users is not None and n_user >= variant_users:
                        continue
                    t0 = time.perf_counter()
                    parse = v.parse(embed) if v.parse_with_embed else v.parse
                    parsed, text = retrieval_inputs(case.text, catalog, has_history=bool(hist), parse=parse,
                                                    anchors=liked, embed=embed if v.similarity else None)
                    row = {"user": u, "type": case.type, "variant": v.name, "request": case.text,
                           "parsed": parsed.describe(), "parse_seconds": time.perf_counter() - t0,
                           "llm_read_seconds": parsed.llm_seconds,
                           "base_rank": base_rank, "base_adherence": _share(case.truth, base_top)}
                    scores = masked(retriever.score_all(hist, query=text, constraints=parsed)
                                    + character_tiers(parsed, catalog, item_ids))
                    if text is None and parsed.history_ranks:  # as recommend: the history ranks within the filters
                        scores = masked(learned(hist, scores))
                    if v.reranker is not None:
                        scores, row["rerank"] = _reranked(v, scores, catalog.history_pairs(hist), case.text,
                                                          catalog, item_ids, pos)
                    rank, top = ranked(scores)
                    if case.keep:  # "like X but Y": how much of the list keeps X's character
                        row |= {"character": _keeps(case.keep, top), "base_character": _keeps(case.keep, base_top)}
                    rows.append(row | {"rank": rank, "adherence": _share(case.truth, top)})
            bar.advance(task)
    summary = summarise([r for r in rows if r["variant"] == variants[0].name], bootstrap, seed)
    if len(variants) > 1:  # every variant on the requests all of them ranked
        both = {(r["user"], r["type"]) for r in rows if r["variant"] == variants[1].name}
        summary["variants"] = {v.name: compare([r for r in rows if (r["user"], r["type"]) in both], v.name,
                                               variants[0].name, bootstrap, seed) for v in variants}
    return summary


def _reranked(v: RequestVariant, scores: np.ndarray, pairs: list, request: str, catalog: Catalog,
              item_ids: list[str], pos: dict[str, int]) -> tuple[np.ndarray, dict[str, Any]]:
    """``scores`` with the LLM's order over the top ``v.pool`` placed first, as ``recommend`` ranks."""
    from mediarec.index.retriever import Candidate
    from mediarec.recommender import place_on_top

    pool = [j for j in np.argsort(-scores, kind="stable")[: v.pool] if np.isfinite(scores[j])]
    if not pool:
        return scores, {"degraded": False, "seconds": 0.0, "cached": True, "prompt_tokens": 0}
    cands = [Candidate(item=catalog.items[item_ids[j]], score=float(scores[j])) for j in pool]
    out = v.reranker.rerank(pairs, cands, k=len(cands), request=request, explain=False)
    return place_on_top(scores, [pos[i] for i in out.order]), {
        "degraded": out.degraded, "seconds": out.usage.seconds, "cached": out.usage.cached,
        "prompt_tokens": out.usage.prompt_tokens + out.usage.reused_tokens}


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


def _keeps(genres: Sequence[str], top: Sequence[Item]) -> float:
    """The share of a top list with one of ``genres`` (a reference's character; nan for an empty list)."""
    want = {g.lower() for g in genres}
    return sum(bool(want & {g.lower() for g in it.genres}) for it in top) / len(top) if top else math.nan


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
        if all("character" in r for r in rs):
            per["character"] = np.array([r["character"] for r in rs], dtype=float)
            per["character_history_only"] = np.array([r["base_character"] for r in rs], dtype=float)
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


def compare(rows: list[dict[str, Any]], name: str, reference: str, bootstrap: int = 1000,
            seed: int = 0) -> dict[str, Any]:
    """Variant ``name`` against ``reference`` on the same requests (paired by user and type), per
    type and pooled: HR@10, NDCG@10, adherence, paired p of each difference, what reading and
    reranking cost, and how often the reading differs from the reference's. The LLM's seconds are
    its own compute time for each answer (a cached answer keeps the time it took when computed), so
    a rerun from the answer cache reports what an uncached run costs."""
    mine = {(r["user"], r["type"]): r for r in rows if r["variant"] == name}
    ref = {(r["user"], r["type"]): r for r in rows if r["variant"] == reference}
    keys = [k for k in mine if k in ref]
    groups = {t: [k for k in keys if k[1] == t] for t in REQUEST_TYPES}
    groups["checkable"] = [k for k in keys if k[1] not in SOFT_TYPES]
    groups["all"] = keys
    out: dict[str, Any] = {}
    for group, ks in groups.items():
        if not ks:
            continue
        a, b = [mine[k] for k in ks], [ref[k] for k in ks]
        per = {"hr@10": (hit_at_k(np.array([r["rank"] for r in a], float), K),
                         hit_at_k(np.array([r["rank"] for r in b], float), K)),
               "ndcg@10": (ndcg_at_k(np.array([r["rank"] for r in a], float), K),
                           ndcg_at_k(np.array([r["rank"] for r in b], float), K)),
               "adherence": (np.nan_to_num(np.array([r["adherence"] for r in a], float)),
                             np.nan_to_num(np.array([r["adherence"] for r in b], float)))}
        idx = bootstrap_index(len(ks), bootstrap, seed) if bootstrap else None
        pidx = bootstrap_index(len(ks), bootstrap, seed + 1) if bootstrap else None
        m: dict[str, Any] = {"n": len(ks)}
        for key, (x, y) in per.items():
            m[key] = float(x.mean())
            m[f"{key}_ci95"] = list(bootstrap_ci(x, bootstrap, seed, index=idx))
            m[f"{key}_reference"] = float(y.mean())
            m[f"p_{key}"] = paired_bootstrap_p(x, y, bootstrap, seed, index=pidx) if name != reference else 1.0
        # reading time: the rules' own plus the LLM's compute time where the LLM was asked
        parse = np.array([(r.get("llm_read_seconds") or 0.0) + min(r["parse_seconds"], 0.05)
                          if r.get("llm_read_seconds") is not None else r["parse_seconds"] for r in a])
        m.update(parse_seconds_mean=float(parse.mean()), parse_seconds_p95=float(np.percentile(parse, 95)),
                 llm_readings=sum(r.get("llm_read_seconds") is not None for r in a),
                 readings_changed=float(np.mean([r["parsed"] != s["parsed"] for r, s in zip(a, b)])))
        reranked = [r["rerank"] for r in a if "rerank" in r]
        if reranked:
            m.update(rerank_seconds_mean=float(np.mean([x["seconds"] for x in reranked])),
                     rerank_prompt_tokens_mean=float(np.mean([x["prompt_tokens"] for x in reranked])),
                     rerank_degraded=sum(x["degraded"] for x in reranked))
        out[group] = m
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
    kept = {n: m for n, m in summary["types"].items() if "character" in m}
    for name, m in kept.items():
        lines += ["", f"`{name}` keeps the reference's character: {ci(m, 'character')} of the top 10 share a "
                      f"genre with X (history only: {ci(m, 'character_history_only')})."]
    if summary.get("variants"):
        lines += variants_markdown(summary["variants"])
    lines += ["", "Examples (request → how it was read):", ""]
    for name, ex in summary["examples"].items():
        for e in ex[:2]:
            lines.append(f"- {name}: {e['request']!r} → {e['parsed']}")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def variants_markdown(variants: dict[str, dict[str, Any]]) -> list[str]:
    """The variants table: each way of reading and ranking against the rules-only retrieval."""
    lines = ["", "### Reading and ranking requests: rules vs rules + LLM, with and without LLM reranking", "",
             "Paired on the same requests (the first `variant_users` users' requests, see requests.json); "
             "p: paired bootstrap against `rules` (retrieval, rules only). "
             "Seconds: mean reading time (p95) and mean LLM rerank time per request, the model's own "
             "compute time (answers served from the cache count the time they took); LLM readings: "
             "requests the rules left words of, which only then go to the LLM.", "",
             "| variant | requests | n | HR@10 | p | NDCG@10 | p | adherence | p | readings changed "
             "| LLM readings | reading s (p95) | rerank s | degraded |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, groups in variants.items():
        for group in (*REQUEST_TYPES, "checkable", "all"):
            m = groups.get(group)
            if m is None:
                continue
            rr = f"{m['rerank_seconds_mean']:.2f}" if "rerank_seconds_mean" in m else "–"
            lines.append(f"| {name} | {group} | {m['n']} | {m['hr@10']:.3f} | {m['p_hr@10']:.3f} | "
                         f"{m['ndcg@10']:.3f} | {m['p_ndcg@10']:.3f} | {m['adherence']:.3f} | "
                         f"{m['p_adherence']:.3f} | {m['readings_changed']:.2f} | {m['llm_readings']} | "
                         f"{m['parse_seconds_mean']:.2f} ({m['parse_seconds_p95']:.2f}) | {rr} | "
                         f"{m.get('rerank_degraded', '–')} |")
    return lines


def write_requests(system: Any, split: Split, users: Sequence[str], protocol: Any, out: Path,
                   command: str, variants: Sequence[RequestVariant] = (RULES,), progress: bool = False,
                   facts: dict[str, Any] | None = None, variant_users: int | None = None) -> dict[str, Any]:
    """Run the benchmark for ``system`` (fitted by the harness on the test phase's training log),
    write ``requests.json`` and add its section to ``report.md``. ``facts``: what the variants ran
    with (the LLM, its fusion weight), recorded beside the numbers."""
    if protocol.mode != "full":
        raise ConfigError("the request benchmark ranks every item: use --protocol full")
    summary = run_requests(system, split, users, seed=protocol.seed, bootstrap=protocol.bootstrap,
                           variants=variants, progress=progress, variant_users=variant_users)
    summary.update(system=system.name, command=command, users=len(users), **(facts or {}))
    if len(variants) > 1:
        summary["variant_users"] = min(variant_users or len(users), len(users))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "requests.json", json.dumps(json_safe(summary), indent=2) + "\n")
    report = out / "report.md"
    before = report.read_text(encoding="utf-8") if report.exists() else ""
    atomic_write_text(report, before + markdown(summary, system.name, command))
    return summary
