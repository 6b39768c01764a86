"""A reason checker in code (the LLM never judges itself), and template reasons that always pass.

:meth:`ReasonChecker.check` passes a reason for item X when all of these hold:

1. **not empty**: at least three words, and not cut off at the token limit (:data:`UNFINISHED`); **not an echo** of the prompt's data lines (no ``|``
   field separator, no ``genres "..."`` field, no ``<<<``/``>>>``);
2. **right item**: it names no other candidate of the list (by catalog title), and does not give
   X as one of the titles it is like ("Titanic …, like Titanic"; titles of 4+ characters);
3. **no foreign title**: every catalog title it names (and every capitalised phrase in quotes) is
   X or an item of the history;
4. **cites evidence**: it names at least one element of X's :class:`Evidence`: a history title it
   lists, a shared genre or tag (with plural and common synonyms: "sci-fi", "science fiction"),
   the era ("1990s", "90s", "nineties"), the request (when X has a request match: "request",
   "asked for", "looking for") or popularity among similar users ("popular", "people who");
5. **no unsupported claim**: none of the words of :data:`CLAIM_WORDS` (praise, awards, cast and
   crew, plot) unless the word is in X's catalog text; and no genre word of the catalog that
   neither X nor the history has, nor one X lacks in what the reason says X is ("X is a horror
   movie" when X is not horror, whatever the history holds; only
   for a catalog with a genre list of at most 80 names, and not for genres that are everyday
   words, :data:`PLAIN_WORD_GENRES`); and no era for X other than its own (in "from the 1990s"
   or "from 1997", the decade or the year of X).

What it does not catch: a title that is in neither the catalog nor quotes, and facts phrased
without those words. Titles are found by the catalog's forgiving title key
(:func:`normalize_title`): any run of up to eight words whose key is a catalog title, starting
with a capital letter; a one-word title also has to be 4+ letters and not open a sentence.

:func:`template_reason` writes a reason from the evidence alone; by construction it cites it and
names only history titles, and the tests check that it passes.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from pydantic import BaseModel

from mediarec.catalog.model import Catalog, Item
from mediarec.catalog.titles import normalize_title
from mediarec.rank.evidence import Evidence

#: Words that claim facts the catalog rarely holds, by kind; a reason may use one only when the
#: item's own catalog text (title, genres, tags, description) has it.
CLAIM_WORDS: dict[str, tuple[str, ...]] = {
    "praise": ("acclaimed", "praised", "praise", "critically", "critic", "critics", "masterpiece", "beloved",
               "iconic", "legendary", "renowned", "celebrated", "famous", "greatest", "timeless", "hit",
               "blockbuster", "box office", "best-selling", "bestselling", "must-see", "cult classic", "classic",
               "classics", "stunning", "brilliant", "memorable", "unforgettable", "groundbreaking", "masterful"),
    "awards": ("award", "awards", "award-winning", "oscar", "oscars", "academy award", "golden globe",
               "nominated", "nomination", "grammy", "grammys", "palme"),
    "cast": ("starring", "stars", "starred", "actor", "actors", "actress", "director", "directed",
             "cast", "performance", "performances", "played by", "written by", "screenplay", "singer"),
    "plot": ("plot", "storyline", "protagonist", "villain", "tells the story", "the story of", "follows",
             "based on", "set in", "twist", "ending"),
}
_CLAIM_RE = {kind: re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
                              + r")\b", re.I) for kind, words in CLAIM_WORDS.items()}

#: Other ways to say a genre (keys lower-case catalog genres).
GENRE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "sci-fi": ("sci-fi", "scifi", "science fiction", "science-fiction"),
    "children's": ("children's", "children", "kids", "family"),
    "film-noir": ("film-noir", "film noir", "noir"),
    "romance": ("romance", "romantic", "romances"),
    "animation": ("animation", "animated"),
    "comedy": ("comedy", "comedies", "comedic", "funny"),
    "documentary": ("documentary", "documentaries"),
    "mystery": ("mystery", "mysteries"),
    "fantasy": ("fantasy", "fantasies"),
    "drama": ("drama", "dramas", "dramatic"),
    "musical": ("musical", "musicals"),
}
#: Genres that are also everyday words ("with your history", "the music"): never read as a genre claim.
PLAIN_WORD_GENRES = frozenset({"history", "music", "family", "war", "world", "soul", "pop", "indie", "alternative",
                               "progressive", "instrumental", "soundtrack", "latin", "classical", "short", "news"})
_REQUEST_WORDS = ("request", "asked for", "ask for", "looking for", "you want", "you asked")
_POPULAR_WORDS = ("popular", "people who", "users who", "viewers who", "fans of", "others who", "listeners who")
_WORD_RE = re.compile(r"[\w'’-]+")
_QUOTED_RE = re.compile(r"[\"“*]([^\"”*]{2,80})[\"”*]")
_MAX_TITLE_WORDS = 8
# "from the 1990s", "from the early '80s", "from 1997": the era the reason gives the item itself
_FROM_ERA_RE = re.compile(r"\bfrom (?:the )?(?:early |late |mid-?)?((?:1[89]|20)\d\ds?|['’]?\d0s|twenties|thirties|forties|"
                          r"fifties|sixties|seventies|eighties|nineties)\b")
EMPTY = "empty or too short"
#: What an LLM backend's caller passes for an answer cut off at its token limit mid-sentence.
UNFINISHED = "(unfinished)"
TOO_LONG = "unfinished: longer than the word limit"
SELF_LIKE = "compares the item with itself"
NOT_ITS_GENRE = "calls the item a genre it does not have"
# "is a dark sci-fi horror movie": the words between "is a" and the kind word describe the item
_IS_A_RE = re.compile(r"\bis an?\s+([^.;:!?]{0,80}?)\s*\b(?:movie|film|series|show|track|song|album|artist|band|video)s?\b")
ECHO = "copies the prompt's data lines instead of writing a sentence"
# the prompt's field separator, its field names before a quoted value, its block delimiters
_ECHO_RE = re.compile(r"\||\b(?:genres|tags|evidence)\s*:?\s*['\"]|<<<|>>>|\bprevious reason rejected\b", re.I)


def genre_forms(genre: str) -> tuple[str, ...]:
    g = " ".join(genre.split()).lower()
    return GENRE_SYNONYMS.get(g, (g, g + "s", g + "es"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _has_phrase(text_lower: str, phrase: str) -> bool:
    return re.search(r"(?<![\w-])" + re.escape(phrase.lower()) + r"(?![\w-])", text_lower) is not None


def _era_forms(era: str) -> tuple[str, ...]:
    full = era[:-1]  # "1990"
    short = full[2:]  # "90"
    names = {"60": "sixties", "70": "seventies", "80": "eighties", "90": "nineties", "50": "fifties",
             "40": "forties", "30": "thirties", "20": "twenties"}
    forms = [era, f"{short}s", f"'{short}s", f"’{short}s"]
    if short in names and full.startswith("19"):
        forms.append(names[short])
    return tuple(forms)


class TitleHit(BaseModel):
    text: str  # as written in the reason
    ids: tuple[str, ...]  # catalog items with that title key


class ReasonCheck(BaseModel):
    """The checker's verdict on one reason, with what it found."""

    passed: bool
    problems: list[str] = []
    cited: list[str] = []
    foreign_titles: list[str] = []  # titles named that are neither the item nor in the history
    other_candidates: list[str] = []  # of which: other candidates of the list


class ReasonChecker:
    """Checks reasons against one catalog (its titles and genre vocabulary)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.genres = {g.lower() for it in catalog.items.values() for g in it.genres}
        # Only a real genre list (not free user tags) can say a genre word is wrong.
        self.claimable_genres = self.genres - PLAIN_WORD_GENRES if len(self.genres) <= 80 else set()

    def titles_in(self, text: str) -> list[TitleHit]:
        """Catalog titles named in ``text`` (longest match first, left to right)."""
        words = list(_WORD_RE.finditer(text))
        index = self.catalog.title_index
        hits: list[TitleHit] = []
        i = 0
        while i < len(words):
            found = None
            for n in range(min(_MAX_TITLE_WORDS, len(words) - i), 0, -1):
                span = text[words[i].start(): words[i + n - 1].end()]
                if not span[0].isupper():
                    break
                key = normalize_title(span)[0]
                if not key or key not in index:
                    continue
                if n == 1 or len(key.split()) == 1:
                    sentence_start = not text[: words[i].start()].strip() or \
                        text[: words[i].start()].rstrip()[-1] in ".!?:;"
                    if len(key) < 4 or (sentence_start and n == 1) or key in self.genres:
                        continue
                found = (n, TitleHit(text=span, ids=index[key]))
                break
            if found:
                hits.append(found[1])
                i += found[0]
            else:
                i += 1
        return hits

    def check(self, reason: str | None, item: Item, evidence: Evidence, history: Sequence[Item],
              others: Iterable[Item] = ()) -> ReasonCheck:
        """Whether ``reason`` may be shown for ``item`` (see the module docstring for the rules)."""
        text = " ".join((reason or "").split())
        if text == UNFINISHED:
            return ReasonCheck(passed=False, problems=[TOO_LONG])
        if len(_WORD_RE.findall(text)) < 3:
            return ReasonCheck(passed=False, problems=[EMPTY])
        allowed = {item.id} | {h.id for h in history}
        allowed_keys = {normalize_title(it.title)[0] for it in [item, *history]}
        other_ids = {o.id: o for o in others if o.id != item.id}
        problems: list[str] = []
        foreign: list[str] = []
        wrong: list[str] = []
        masked = text
        for it in sorted([item, *history], key=lambda it: -len(it.label)):  # titles are names, not claims
            masked = masked.replace(_one_line(it.label), " ").replace(_one_line(it.title), " ")
        for g in evidence.shared_genres + evidence.shared_tags:  # catalog words, whatever they hold
            masked = re.sub(re.escape(_one_line(g)), " ", masked, flags=re.I) if len(g) > 2 else masked
        if _ECHO_RE.search(masked):  # a title may hold anything; the rest of the reason may not
            return ReasonCheck(passed=False, problems=[ECHO])
        hits = self.titles_in(text)
        for h in hits:
            if allowed & set(h.ids):
                masked = masked.replace(h.text, " ")
            elif set(h.ids) & set(other_ids):
                wrong.append(h.text)
            else:
                foreign.append(h.text)
        for m in _QUOTED_RE.finditer(masked):
            q = m.group(1).strip()
            key = normalize_title(q)[0]
            if q[:1].isupper() and key and key not in allowed_keys and q.lower() not in self.genres \
                    and not any(q in f or f in q for f in foreign + wrong):
                foreign.append(q)
        # "Titanic is a drama …, like Titanic": the item is not a title they liked
        own_title = _one_line(item.title)
        longer = text  # "Batman …, like Batman Returns" names a history title, not the item
        for h in sorted(history, key=lambda h: -len(h.title)):
            if own_title.lower() in h.title.lower() and h.title.lower() != own_title.lower():
                longer = re.sub(re.escape(_one_line(h.title)), " ", longer, flags=re.I)
        if len(own_title) >= 4 and re.search(r"\b(?:like|and|or)\s+[\"“'‘]?" + re.escape(own_title) + r"\b", longer, re.I):
            problems.append(SELF_LIKE)
        if wrong:
            problems.append("names another candidate: " + "; ".join(wrong))
        if foreign:
            problems.append("names a title outside the history: " + "; ".join(foreign))
        low = text.lower()
        cited = [h.title for h in evidence.history_titles()
                 if h.id in {i for x in hits for i in x.ids} or _has_phrase(low, normalize_title(h.title)[0])
                 or _has_phrase(low, _one_line(h.title))]
        for g in evidence.shared_genres + evidence.shared_tags:
            if any(_has_phrase(low, f) for f in genre_forms(g)):
                cited.append(g)
        if evidence.era and any(_has_phrase(low, f) for f in _era_forms(evidence.era)):
            cited.append(evidence.era)
        if "request" in evidence.elements() and any(w in low for w in _REQUEST_WORDS):
            cited.append("request")
        if evidence.popularity and any(w in low for w in _POPULAR_WORDS):
            cited.append("popular")
        if not cited:
            problems.append("cites none of the evidence")
        masked_low = masked.lower()
        own = item.text(4000).lower()
        for kind, rx in _CLAIM_RE.items():
            found = {m.group(1).lower() for m in rx.finditer(masked_low)}
            # supported when the item's own text has the word ("award" supports "award-winning")
            words = sorted(w for w in found if not (_has_phrase(own, w) or _has_phrase(own, w.split("-")[0])))
            if words:
                problems.append(f"unsupported claim ({kind}): " + ", ".join(words))
        if item.year:
            decade = f"{item.year // 10 * 10}s"
            right = {f.lower() for f in _era_forms(decade)} | {str(item.year)}
            wrong_eras = [m.group(0) for m in _FROM_ERA_RE.finditer(masked_low) if m.group(1) not in right]
            if wrong_eras:
                problems.append("wrong era for the item: " + "; ".join(wrong_eras))
        known = {g.lower() for g in item.genres} | {g.lower() for h in history for g in h.genres}
        bad_genres = [g for g in sorted(self.claimable_genres - known) if len(g) >= 3
                      and any(_has_phrase(masked_low, f) for f in genre_forms(g))]
        if bad_genres:
            problems.append("genre neither the item's nor the history's: " + ", ".join(bad_genres))
        # "X is a horror movie": what X is must be X's own genre, not only the history's
        own_genres = {g.lower() for g in item.genres}
        said = " ".join(m.group(1) for m in _IS_A_RE.finditer(masked_low))
        not_its = [g for g in sorted(self.claimable_genres - own_genres - set(bad_genres)) if len(g) >= 3
                   and any(_has_phrase(said, f) for f in genre_forms(g))]
        if not_its:
            problems.append(f"{NOT_ITS_GENRE}: " + ", ".join(not_its))
        return ReasonCheck(passed=not problems, problems=problems, cited=list(dict.fromkeys(cited)),
                           foreign_titles=foreign + wrong, other_candidates=wrong)


def template_reason(evidence: Evidence) -> str:
    """A reason written from the evidence alone: the strongest history links, shared genres and
    the era (or the request match / popularity), in one plain sentence."""
    titles = [_one_line(h.label) for h in evidence.history_titles()[:2]]
    parts = []
    if titles:
        parts.append("Because you liked " + " and ".join(titles))
    if evidence.shared_genres:
        parts.append(("it shares " if parts else "It shares ") + ", ".join(_one_line(g).lower() for g in evidence.shared_genres[:3])
                     + " with your history")
    if evidence.era and evidence.era_count > 1:
        parts.append(("it comes from the " if parts else "It comes from the ")
                     + f"{evidence.era}, like {evidence.era_count} items you liked")
    if "request" in evidence.elements():
        parts.append(("it matches your request" if parts else "It matches your request"))
    if not parts and evidence.popularity:
        parts.append("It is popular with people who liked the same items")
    if not parts:
        parts.append(f"It comes from the {evidence.era}, like an item you liked" if evidence.era
                     else "It was found from your history")
    return "; ".join(parts) + "."
