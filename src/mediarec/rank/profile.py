"""Interest profiles: a short description of a taste, written by the LLM from a history.

``build_profile(llm, prompts, history)`` renders the ``profile`` prompt, asks for JSON constrained
by :func:`mediarec.rank.schemas.profile_json_schema` and validates it into an :class:`InterestProfile`.
The LLM's disk cache makes the same history give the same profile without a second call. Without
an LLM (or when it answers garbage) the profile is computed from the data instead: the history's
most frequent genres, tags and decades. :func:`profile_query` turns a profile into text for
retrieval, used by a chat session when a request is too vague to search for.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Literal, Sequence

from pydantic import ValidationError, field_validator

from mediarec.catalog.model import Interaction, Item, pair_liked, rating_midpoint
from mediarec.llm.base import LLM, LLMUnavailable
from mediarec.rank.prompts import PromptLibrary, history_entries
from mediarec.rank.lenient_json import first_json_object
from mediarec.rank.schemas import ProfileAnswer, profile_json_schema

MAX_ITEMS = 6
ITEM_MAX_CHARS = 40
SUMMARY_MAX_CHARS = 300
MAX_HISTORY = 30

#: Tags that describe a mood rather than a subject (used by the fallback profile).
MOOD_WORDS = frozenset("""
atmospheric bleak calm cheerful chill cozy cosy creepy dark dreamy eerie emotional energetic epic feel-good
funny gentle gloomy gritty heartwarming hopeful intense joyful light lighthearted light-hearted melancholic
melancholy moody mysterious nostalgic peaceful playful quiet relaxing romantic sad serene slow slow-burn
suspense suspenseful tense thoughtful uplifting unsettling warm whimsical witty quirky haunting hypnotic
meditative upbeat aggressive angry brooding claustrophobic contemplative disturbing tender bittersweet
""".split())


def _clean_list(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        v = [p for p in re.split(r"[,;\n]", v)]
    if not isinstance(v, (list, tuple)):
        raise ValueError("expected a list of short phrases")
    out: list[str] = []
    seen: set[str] = set()
    for x in v:
        if isinstance(x, (dict, list, tuple)) or x is None:
            continue
        s = " ".join(str(x).split()).strip(" .,;:-\"'")
        if not s:
            continue
        s = s[:ITEM_MAX_CHARS]
        if s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
        if len(out) >= MAX_ITEMS:
            break
    return out


class InterestProfile(ProfileAnswer):
    """A taste in a few short phrases and a summary (the profile prompt's answer, cleaned);
    ``source`` says who wrote it."""

    source: Literal["llm", "fallback"] = "llm"

    @field_validator("themes", "moods", "genres", "eras", "keywords", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> list[str]:
        return _clean_list(v)

    @field_validator("eras", mode="after")
    @classmethod
    def _decades(cls, v: list[str]) -> list[str]:
        """Years and odd decades ("1994", "1994s") as the decade ("1990s"), each once."""
        out: list[str] = []
        for e in v:
            m = re.fullmatch(r"(1[89]\d|20\d)\d\s*'?s?", e.strip())
            d = f"{m.group(1)}0s" if m else e
            if d.lower() not in (x.lower() for x in out):
                out.append(d)
        return out

    @field_validator("summary", mode="before")
    @classmethod
    def _summary(cls, v: Any) -> str:
        if v is None:
            return ""
        if not isinstance(v, str):
            raise ValueError("summary must be text")
        return " ".join(v.split())[:SUMMARY_MAX_CHARS]

    def is_empty(self) -> bool:
        return not (self.themes or self.moods or self.genres or self.eras or self.keywords or self.summary.strip())


def parse_profile(text: str) -> InterestProfile | None:
    """An InterestProfile from the model's answer, or None when it holds no usable profile."""
    obj = first_json_object(text)
    if obj is None:
        return None
    lower = {str(k).lower(): v for k, v in obj.items()}
    fields = {k: lower.get(k) for k in ("themes", "moods", "genres", "eras", "keywords", "summary")}
    try:
        prof = InterestProfile.model_validate({k: v for k, v in fields.items() if v is not None} | {"source": "llm"})
    except ValidationError:
        return None
    return None if prof.is_empty() else prof


def _items_of(history: Iterable[Any]) -> list[tuple[Item, Interaction | None]]:
    pairs: list[tuple[Item, Interaction | None]] = []
    for h in history:
        if isinstance(h, Item):
            pairs.append((h, None))
        elif isinstance(h, tuple) and h and isinstance(h[0], Item):
            pairs.append((h[0], h[1] if len(h) > 1 else None))
        else:
            raise TypeError(f"history entries must be Items or (Item, Interaction) pairs, not {type(h).__name__}")
    return pairs


def build_profile(llm: LLM | None, prompts: PromptLibrary | None,
                  history_items: Sequence[Item | tuple[Item, Interaction | None]],
                  max_history: int = MAX_HISTORY, summary_words: int = 40) -> InterestProfile:
    """The interest profile of a history (Items or (Item, Interaction) pairs, oldest first).

    Asks the LLM (answers are cached on disk, so the same history is asked once); falls back to
    :func:`fallback_profile` when there is no LLM, the model is unavailable or its answer is unusable.
    Disliked entries show the model what to avoid and are left out of the fallback.
    """
    pairs = _items_of(history_items)
    if llm is None or not pairs:
        return fallback_profile(pairs)
    prompts = prompts or PromptLibrary()
    msgs = prompts.render("profile", history=history_entries(pairs, max_history), summary_words=summary_words)
    try:
        comp = llm.chat(msgs, schema=profile_json_schema(MAX_ITEMS, ITEM_MAX_CHARS, SUMMARY_MAX_CHARS),
                        max_tokens=400)
    except (LLMUnavailable, ValueError):
        return fallback_profile(pairs)
    prof = parse_profile(comp.text)
    return prof if prof is not None else fallback_profile(pairs)


def _decade(year: int | None) -> str | None:
    if not year or year < 1000:
        return None
    return f"{year // 10 * 10}s"


def fallback_profile(history_items: Iterable[Any]) -> InterestProfile:
    """A deterministic profile: the most frequent genres, tags and decades of the history.

    Recent and well-rated items weigh more; what the user did not like (a dislike, or a rating below
    their midpoint: :func:`~mediarec.catalog.model.pair_liked`, the one definition) not at all.
    """
    pairs = _items_of(history_items)
    liked = pair_liked(pairs)
    mid = rating_midpoint(x.rating for _, x in pairs if x is not None and x.rating is not None)
    genres: Counter[str] = Counter()
    tags: Counter[str] = Counter()
    eras: Counter[str] = Counter()
    first_seen: dict[str, int] = {}
    n = len(pairs)
    for pos, ((it, x), ok) in enumerate(zip(pairs, liked)):
        if not ok:
            continue
        w = 1.0 + pos / max(n, 1)  # newer counts a little more
        if x is not None and (x.event in ("like", "favourite") or (x.rating is not None and mid is not None and x.rating > mid)):
            w += 0.5  # above the user's own midpoint: well rated
        for g in it.genres:
            genres[g] += w
            first_seen.setdefault(g, pos)
        for t in it.tags:
            if re.fullmatch(r"\d{4}s", t.strip()):
                continue  # decades are eras, not themes
            tags[t] += w
            first_seen.setdefault(t, pos)
        d = _decade(it.year)
        if d:
            eras[d] += w
            first_seen.setdefault(d, pos)

    def top(c: Counter[str], k: int = MAX_ITEMS) -> list[str]:
        return [v for v, _ in sorted(c.items(), key=lambda kv: (-kv[1], first_seen.get(kv[0], 0), kv[0]))[:k]]

    moods = top(Counter({t: w for t, w in tags.items() if t.lower() in MOOD_WORDS}))
    themes = top(Counter({t: w for t, w in tags.items() if t.lower() not in MOOD_WORDS}))
    keywords = top(Counter({t: w for t, w in tags.items() if t not in themes and t not in moods}))
    g, e = top(genres), top(eras, 4)
    if not pairs:
        summary = "No history yet."
    else:
        bits = []
        if g:
            bits.append("mostly " + _join(g[:3]))
        if e:
            bits.append("from the " + _join(e[:3]))
        if themes:
            bits.append("often about " + _join(themes[:3]))
        if moods:
            bits.append("with a " + _join(moods[:2]) + " feel")
        summary = (", ".join(bits) or f"{len(pairs)} items") + "."
        summary = summary[0].upper() + summary[1:]
    return InterestProfile(themes=themes, moods=moods, genres=g, eras=e, keywords=keywords,
                           summary=summary, source="fallback")


def _join(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def profile_query(profile: InterestProfile) -> str:
    """Retrieval text for a profile, shaped like the embedded item text ("genres: ... tags: ...")."""
    parts = []
    if profile.genres:
        parts.append("genres: " + ", ".join(profile.genres))
    tags = list(dict.fromkeys(profile.themes + profile.moods + profile.keywords))
    if tags:
        parts.append("tags: " + ", ".join(tags[:12]))
    if profile.eras:
        parts.append(", ".join(profile.eras))
    if profile.summary and profile.source == "llm":
        parts.append(profile.summary[:200])
    return ". ".join(parts)
