"""Reading a request with the LLM (``request`` prompt, JSON schema), checked against the catalogue.

The rule parser (:func:`mediarec.rank.request.parse_request`) is the default and always runs; the
LLM only fills what the rules left empty (a genre said in words the synonym table lacks, a title
the rules could not find), and everything it says is checked against the catalogue's own
genres, kinds, years and titles, so a confused or manipulated model cannot add a constraint the
catalogue does not have. Any failure (no answer, no JSON) leaves the rules' reading.

The LLM is asked only when the rules left words unread (``Constraints.unread``): a request they read
whole has nothing left for it, and asking would only cost seconds and invite constraints the user
never said. An answer that lists more genres than a request names is the model copying the
prompt's list (small models do), so it is dropped; the schema caps the lists and strings too, which
also bounds the tokens a local model generates under its grammar.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

from mediarec.catalog.model import Catalog
from mediarec.llm.base import LLM, LLMUnavailable
from mediarec.rank.lenient_json import first_json_object
from mediarec.rank.prompts import PromptLibrary
from mediarec.rank.request import Constraints, parse_request, vocabulary

MAX_TOKENS = 160
YEARS = (1800, 2100)
MAX_GENRES = 2  # a request names one or two genres; an answer with more is copying the list
MAX_EXCLUDED = 3


def request_schema(genres: list[str], kinds: list[str]) -> dict[str, Any]:
    """The JSON schema the answer is constrained to (enums: the catalogue's own words)."""
    nullable_year = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    return {"type": "object", "additionalProperties": False,
            "properties": {"genres": {"type": "array", "items": {"enum": genres}, "maxItems": MAX_GENRES},
                           "exclude_genres": {"type": "array", "items": {"enum": genres}, "maxItems": MAX_EXCLUDED},
                           "kinds": {"type": "array", "items": {"enum": kinds}, "maxItems": 1},
                           "year_min": nullable_year, "year_max": nullable_year,
                           "reference_title": {"anyOf": [{"type": "string", "maxLength": 80}, {"type": "null"}]},
                           "free_text": {"type": "string", "maxLength": 80}},
            "required": ["genres", "exclude_genres", "kinds", "year_min", "year_max", "reference_title", "free_text"]}


def llm_parse_request(text: str | None, catalog: Catalog, llm: LLM, prompts: PromptLibrary | None = None) -> Constraints:
    """The rules' reading of ``text``, completed by the LLM's where the rules found nothing."""
    rules = parse_request(text, catalog)
    if not rules.request or not rules.unread:  # read whole by the rules: nothing left for the LLM
        return rules
    vocab = vocabulary(catalog)
    genres, kinds = sorted(set(vocab.genres.values())), sorted(vocab.kinds)
    messages = (prompts or PromptLibrary()).render("request", request=rules.request, genres=genres, kinds=kinds)
    t0 = time.perf_counter()
    try:
        answer = llm.chat(messages, schema=request_schema(genres, kinds) if llm.supports_schema else None,
                          max_tokens=MAX_TOKENS)
    except (LLMUnavailable, ValueError):
        return rules
    obj = first_json_object(answer.text) or {}
    merged = merge(rules, obj, catalog)
    # the model's own time for this answer (a cached one keeps the time it took when computed)
    merged.llm_seconds = answer.usage.seconds or time.perf_counter() - t0
    return merged


def merge(rules: Constraints, answer: dict[str, Any], catalog: Catalog) -> Constraints:
    """``rules`` with the empty fields filled from a checked LLM answer."""
    vocab = vocabulary(catalog)
    known = {g.lower(): g for g in vocab.genres.values()}

    def genres_of(key: str, most: int) -> list[str]:
        vals = answer.get(key)
        got = list(dict.fromkeys(known[v.lower()] for v in vals if isinstance(v, str) and v.lower() in known)) \
            if isinstance(vals, list) else []
        return got if len(got) <= most else []  # more than a request names: the list copied, not read

    def year(key: str) -> int | None:
        v = answer.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and YEARS[0] <= v <= YEARS[1] else None

    c = rules.model_copy(deep=True)
    c.parser = "rules+llm"
    if not c.genres:  # every genre asked for must hold: a long list would empty the result
        c.genres = genres_of("genres", MAX_GENRES)
    c.exclude_genres = list(dict.fromkeys(c.exclude_genres + [g for g in genres_of("exclude_genres", MAX_EXCLUDED)
                                                               if g not in c.genres]))
    kinds = answer.get("kinds")
    if not c.kinds and len(vocab.kinds) > 1 and isinstance(kinds, list):
        c.kinds = [k for k in kinds if isinstance(k, str) and k in vocab.kinds]
    if c.year_min is None and c.year_max is None:
        lo, hi = year("year_min"), year("year_max")
        if lo is None or hi is None or lo <= hi:
            c.year_min, c.year_max = lo, hi
    title = answer.get("reference_title")
    if c.reference is None and isinstance(title, str) and title.strip():
        hits = catalog.find_titles(title[:200])
        if len(hits) >= 1 and title.lower() in c.request.lower():  # a title the user wrote, not one invented
            c.reference, c.reference_title = hits[0].id, hits[0].label
    return c


# -- reading by scoring -----------------------------------------------------------------------------
# The LLM reads a request by scoring the catalogue's own words, as ranking scores candidates: the
# answer is read from the model's logits restricted to those words (:meth:`LLM.choose`), so nothing
# is generated, it costs one prompt evaluation (the vocabulary stays evaluated between requests)
# plus a token where words share a start, and it can only ever answer with a word the catalogue has.
SCORE_TAGS = 20  # the catalogue's most frequent tags offered too
MAX_WORDS = 60  # the prompt's vocabulary: the commonest genres, then kinds, decades, tags
MAX_GENRE_WORDS = 30
NONE_NAME = "none of these"
# the probability (among the words) the chosen word needs; chosen on eval DEV_PARAPHRASES (one framing) with
# qwen2.5-coder-0.5b, never on the benchmark's PARAPHRASES
SCORE_MIN = 0.40  # there: 8 right, 4 wrong of 37 (0.30: 8 and 7; 0.50: 3 and 2)
WANT_QUESTION = "Which one of the catalog's words does this request ask for? Answer with that word only."
POLARITY_QUESTION = "Does the user want {name}, or avoid it? Answer want or avoid."
POLARITY = ("want", "avoid")


def score_entries(catalog: Catalog) -> list[dict[str, Any]]:
    """The words the LLM chooses among: the catalogue's genres, kinds (several only), decades and
    most frequent tags, then "none of these"."""
    from mediarec.rank.request import _TOO_GENERIC, _WORDLIKE

    vocab = vocabulary(catalog)
    words: list[tuple[str, str, Any]] = [(g, "genre", g) for g in vocab.genres.values()
                                         if _WORDLIKE.match(g) and g.lower() not in _TOO_GENERIC][:MAX_GENRE_WORDS]
    if len(vocab.kinds) > 1:
        words += [(k, "kind", k) for k in sorted(vocab.kinds)]
    years = sorted({it.year - it.year % 10 for it in catalog.items.values() if it.year})
    words += [(f"the {d}s", "decade", d) for d in years[-12:]]
    taken = {w[0].lower() for w in words}
    words += [(t, "tag", t) for t, _ in vocab.tag_counts.most_common()
              if t in vocab.tags and t not in taken][:SCORE_TAGS]
    words = words[:MAX_WORDS - 1] + [(NONE_NAME, "none", None)]
    return [{"name": name, "what": what, "value": value} for name, what, value in words]


CONTENT_FREE = "N/A"  # the request whose answer is the model's bias alone (contextual calibration)
# Per catalogue (weakly: it goes with the catalogue; an id() key could be reused by the next one),
# then per model and vocabulary. The values never refer to the catalogue.
_PRIORS: "weakref.WeakKeyDictionary[Catalog, dict[tuple[str, int], dict[str, float]]]" = weakref.WeakKeyDictionary()


def _prior(llm: LLM, prompts: PromptLibrary, entries: list[dict[str, Any]], catalog: Catalog) -> dict[str, float]:
    """What the model answers to a content-free request: its bias toward each word (small models
    favour the first listed and the commonest), asked once per model and vocabulary."""
    key = (llm.spec, hash(tuple(e["name"] for e in entries)))
    known = _PRIORS.setdefault(catalog, {})
    if key not in known:
        known[key] = llm.choose(prompts.render("request_score", entries=entries, request=CONTENT_FREE,
                                               question=WANT_QUESTION), [e["name"] for e in entries]).first
    return known[key]


def calibrated(first: dict[str, float], prior: dict[str, float], chosen: str) -> tuple[str, float]:
    """(word, probability) after dividing out the model's bias (Zhao et al. 2021, "Calibrate before
    use"): each word's share at the first token over its share for a content-free request,
    renormalised. Words sharing a first token share a share: the model's own choice among them
    stands when it is in the winning group, else the group is ambiguous and "none" is returned."""
    if not first:
        return chosen, 0.0
    floor = 1e-3
    ratio = {w: v / max(prior.get(w, floor), floor) for w, v in first.items()}
    # one share per first token: options sharing it have equal shares in ``first``
    groups: dict[float, list[str]] = {}
    for w, v in first.items():
        groups.setdefault(v, []).append(w)
    z = sum(ratio[ws[0]] for ws in groups.values())
    best = max(groups.values(), key=lambda ws: ratio[ws[0]])
    p = ratio[best[0]] / z if z > 0 else 0.0
    if len(best) == 1:
        return best[0], p
    return (chosen, p) if chosen in best else (NONE_NAME, 0.0)


def apply_scored(rules: Constraints, entry: dict[str, Any] | None, p: float, unwanted: bool,
                 catalog: Catalog) -> Constraints:
    """``rules`` with the chosen word added (an empty field only: the rules' reading wins), or
    unchanged for "none" or a choice below SCORE_MIN; says what it applied."""
    from mediarec.rank.request import keep_character

    c = rules.model_copy(deep=True)
    c.parser = rules.parser + "+llm-score"
    c.close_genres = []
    if entry is None or entry["what"] == "none" or p < SCORE_MIN:
        return c
    what, value, name = entry["what"], entry["value"], entry["name"]
    if what == "genre" and not unwanted and not c.genres and value not in c.exclude_genres:
        c.genres.append(value)
    elif what == "genre" and unwanted and value not in c.exclude_genres + c.genres:
        c.exclude_genres.append(value)
    elif what == "kind" and len(vocabulary(catalog).kinds) > 1 and not c.kinds and not unwanted:
        c.kinds = [value]
    elif what == "kind" and unwanted and value not in c.exclude_kinds:
        c.exclude_kinds.append(value)
    elif what == "decade" and c.year_min is None and c.year_max is None and not unwanted:
        c.year_min, c.year_max = value, value + 9
    elif what == "decade" and unwanted:
        c.exclude_years.append((value, value + 9))
    elif what == "tag" and value not in c.tags + c.exclude_tags:
        (c.exclude_tags if unwanted else c.tags).append(value)
    else:
        return c
    said = " ".join(c.unread) or c.request
    c.applied.append(f"{said!r} read as {'no ' if unwanted else ''}{name} by the LLM ({p:.2f})")
    c.unread = []
    return keep_character(c, catalog)


def llm_score_request(text: str | None, catalog: Catalog, llm: LLM, prompts: PromptLibrary | None = None,
                      read: Constraints | None = None) -> Constraints:
    """The rules' reading of ``text``, completed where the rules left words unread by the LLM
    choosing among the catalogue's words (one forward pass, :meth:`LLM.choose`). Whether the chosen
    word is wanted or avoided is a second choice on the same prompt (only its question differs, so
    only that is evaluated), asked only when the request holds a negation. Any failure leaves the
    rules' reading. ``read``: the reading so far (default the rules'), e.g. after the MiniLM fallback."""
    from mediarec.rank.request import _NEG_CUE

    rules = read if read is not None else parse_request(text, catalog)
    if not rules.request or not rules.unread:
        return rules
    prompts = prompts or PromptLibrary()
    entries = score_entries(catalog)
    by_name = {e["name"]: e for e in entries}
    # a close call of the embedding fallback: only its nearest genres (and "none") are offered, on
    # the same prompt (the vocabulary stays evaluated); fewer options, fewer tokens to walk
    offered = [g for g in rules.close_genres if g in by_name]
    options = offered + [NONE_NAME] if offered else list(by_name)
    t0 = time.perf_counter()
    try:
        prior = _prior(llm, prompts, entries, catalog)
        got = llm.choose(prompts.render("request_score", entries=entries, request=rules.request,
                                        question=WANT_QUESTION), options)
        name, p = calibrated(got.first, {o: prior.get(o, 0.0) for o in options}, got.option)
        entry, seconds, unwanted = by_name[name], got.usage.seconds, False
        if entry["what"] != "none" and p >= SCORE_MIN \
                and _NEG_CUE.search(" " + rules.request.lower() + " "):
            pol = llm.choose(prompts.render("request_score", entries=entries, request=rules.request,
                                            question=POLARITY_QUESTION.format(name=entry["name"])), list(POLARITY))
            unwanted, seconds = pol.option == "avoid", seconds + pol.usage.seconds
    except (LLMUnavailable, ValueError, NotImplementedError):
        return rules
    out = apply_scored(rules, entry, p, unwanted, catalog)
    out.llm_seconds = seconds or time.perf_counter() - t0
    return out
