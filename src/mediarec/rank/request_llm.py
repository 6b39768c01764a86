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
