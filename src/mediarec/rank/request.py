"""What a request asks for: an English request read into structured :class:`Constraints`.

"something like Alien but funnier, nothing from before 1980" is a reference item (Alien), a genre
(Comedy), a year range (1980-) and no free text. Hard constraints (genres, kinds, years,
exclusions) filter the candidates exactly (:meth:`Constraints.allows`, and
:meth:`Constraints.where` for what Chroma stores). Tags asked for stay soft: tagging is sparse
(a sixth of MovieLens latest-small) and "tense 80s sci-fi" should not mean "only items someone
tagged tense"; they go to the text query with what the rules do not understand ("darker").

The rule parser knows only the catalogue's own vocabulary (its genres, tags, kinds, titles) plus a
small synonym table, so it never invents a genre the catalogue does not have: words it understands
but the catalogue lacks are listed in ``unmet``. The request is data throughout: nothing in it
is executed or sent anywhere but the embedder (and the reranker's prompt, quoted).
"""

from __future__ import annotations

import re
import weakref
from collections import Counter
from typing import Any, Callable

from pydantic import BaseModel, Field

from mediarec.catalog.model import Catalog, Item
from mediarec.catalog.titles import normalize_title

MAX_REQUEST_CHARS = 500  # longer requests are cut: a request is a sentence, not a document

# word or phrase -> normalised genre names it may stand for, the first the catalogue has wins
GENRE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "funny": ("comedy",), "funnier": ("comedy",), "comedy": ("comedy",), "comedies": ("comedy",),
    "hilarious": ("comedy",), "comic": ("comedy",), "lighthearted": ("comedy",), "light-hearted": ("comedy",),
    "scary": ("horror",), "scarier": ("horror",), "horror": ("horror",), "frightening": ("horror",),
    "creepy": ("horror",), "creepier": ("horror",), "spooky": ("horror",),
    "sci-fi": ("scifi",), "sci fi": ("scifi",), "scifi": ("scifi",), "science fiction": ("scifi",),
    "science-fiction": ("scifi",),
    "romantic": ("romance",), "romance": ("romance",), "love story": ("romance",), "romcom": ("romance", "comedy"),
    "animated": ("animation",), "animation": ("animation",), "cartoon": ("animation",), "cartoons": ("animation",),
    "kids": ("childrens", "children", "family"), "children": ("childrens", "children", "family"),
    "children's": ("childrens", "children", "family"), "family": ("family", "childrens", "children"),
    "thriller": ("thriller",), "thrillers": ("thriller",), "thrilling": ("thriller",), "suspenseful": ("thriller",),
    "action": ("action",), "war": ("war",), "western": ("western",), "westerns": ("western",),
    "musical": ("musical",), "musicals": ("musical",),
    "documentary": ("documentary",), "documentaries": ("documentary",), "doc": ("documentary",),
    "crime": ("crime",), "gangster": ("crime",), "mystery": ("mystery",), "mysteries": ("mystery",),
    "whodunit": ("mystery",), "noir": ("filmnoir", "neonoir"), "film noir": ("filmnoir",),
    "film-noir": ("filmnoir",), "fantasy": ("fantasy",), "adventure": ("adventure",),
    "adventures": ("adventure",), "drama": ("drama",), "dramas": ("drama",), "dramatic": ("drama",),
    "jazz": ("jazz",), "rock": ("rock",), "electronic": ("electronic",), "classical": ("classical",),
    "hip hop": ("hiphop",), "hip-hop": ("hiphop",), "rap": ("hiphop",), "ambient": ("ambient",),
    "folk": ("folk",), "metal": ("metal",), "pop": ("pop",), "soul": ("soul",),
}
# comparatives that ask for more of a genre ("funnier") read the same as the genre
KIND_WORDS: dict[str, str] = {
    "album": "album", "albums": "album", "lp": "album", "lps": "album",
    "film": "movie", "films": "movie", "movie": "movie", "movies": "movie",
    "series": "series", "tv show": "series", "tv shows": "series", "tv series": "series",
    "track": "track", "tracks": "track", "song": "track", "songs": "track",
    "artist": "artist", "artists": "artist", "band": "artist", "bands": "artist", "musician": "artist",
    "video": "video", "videos": "video",
}
_NEGATION = r"(?:no|not|nothing|without|avoid|except|but not|none|skip|never|less|no more|exclude|ban|drop|hide)"
_DEGREE = r"(?:too|so|very|overly|any|more|really|particularly)"
_DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990, "noughties": 2000}
_FILLER = set("""a an the some something anything me i i'd id want would like please give show recommend find
get good great nice really just one ones more kind sort of to with for in from and or but that
which is are be it its that's something's can could you your my stuff thing things maybe perhaps
similar suggest suggestion suggestions watch listen hear see mood feel feeling lot bit little new
what do does have has got this time please thanks thank i'm im any anyway okay ok now instead anymore""".split())
_TOO_GENERIC = {"music", "world", "other", "unknown"}  # catalogue genres too common as plain words
# a catalogue genre or tag is matched as words only if it is words ("sci-fi", "rock & roll"), never
# punctuation a hostile catalogue made a genre (">>>")
_WORDLIKE = re.compile(r"^\w[\w '&/.+-]{0,60}$")
RECENT_YEARS = 5  # "recent": the last five years of the catalogue


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


class Constraints(BaseModel):
    """A parsed request. Every genre asked for must hold, one of the kinds, none of the exclusions."""

    request: str = ""
    genres: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    year_min: int | None = None
    year_max: int | None = None
    kinds: list[str] = Field(default_factory=list)
    exclude_genres: list[str] = Field(default_factory=list)
    exclude_tags: list[str] = Field(default_factory=list)
    reference: str | None = None  # an item id the request compares to ("like Alien but ...")
    reference_title: str | None = None
    soft: str = ""  # what the rules did not read: it steers the text query
    unmet: list[str] = Field(default_factory=list)  # understood, but absent from this catalogue
    parser: str = "rules"  # or "rules+llm" (mediarec.rank.request_llm)
    llm_seconds: float | None = None  # what reading it with the LLM took

    @property
    def is_hard(self) -> bool:
        """Whether anything filters candidates (else the request only steers the ranking)."""
        return bool(self.genres or self.year_min is not None
                    or self.year_max is not None or self.kinds or self.exclude_genres or self.exclude_tags)

    @property
    def is_empty(self) -> bool:
        return not (self.is_hard or self.tags or self.reference or self.soft)

    def without_filters(self) -> "Constraints":
        """The same request with no hard constraint: the reference item, tags and free text only."""
        return self.model_copy(update={"genres": [], "kinds": [], "year_min": None, "year_max": None,
                                       "exclude_genres": [], "exclude_tags": []})

    def allows(self, item: Item) -> bool:
        """Whether ``item`` satisfies every hard constraint, by its catalogue metadata."""
        genres = {g.lower() for g in item.genres}
        tags = {t.lower() for t in item.tags}
        if any(g.lower() not in genres for g in self.genres):
            return False
        if self.kinds and item.kind not in self.kinds:
            return False
        if self.year_min is not None and not (item.year and item.year >= self.year_min):
            return False
        if self.year_max is not None and not (item.year and item.year <= self.year_max):
            return False
        if any(g.lower() in genres for g in self.exclude_genres):
            return False
        return not any(t.lower() in tags for t in self.exclude_tags)

    def where(self) -> dict[str, Any] | None:
        """A Chroma ``where`` filter over the metadata the index stores (kind, year), or None."""
        clauses: list[dict[str, Any]] = []
        if self.kinds:
            clauses.append({"kind": {"$in": list(self.kinds)}})
        if self.year_min is not None:
            clauses.append({"year": {"$gte": int(self.year_min)}})
        if self.year_max is not None:
            clauses.append({"year": {"$lte": int(self.year_max)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def text_query(self) -> str | None:
        """The soft part for the text side: the tags asked for and the free text."""
        parts = self.tags + [self.soft]
        text = " ".join(p for p in parts if p).strip()
        return text or None

    def describe(self) -> str:
        """One line for people: what was read from the request."""
        parts = []
        if self.reference_title:
            parts.append(f"like {self.reference_title}")
        if self.genres:
            parts.append("genre " + " and ".join(self.genres))
        if self.tags:
            parts.append("about " + ", ".join(self.tags))
        if self.kinds:
            parts.append("kind " + " or ".join(self.kinds))
        if self.year_min is not None or self.year_max is not None:
            lo, hi = self.year_min, self.year_max
            parts.append(f"years {lo}-{hi}" if lo is not None and hi is not None
                         else f"from {lo} on" if lo is not None else f"up to {hi}")
        if self.exclude_genres or self.exclude_tags:
            parts.append("no " + ", no ".join(self.exclude_genres + self.exclude_tags))
        if self.soft:
            parts.append(f"free text {self.soft!r}")
        if self.unmet:
            parts.append("not in this catalogue: " + ", ".join(self.unmet))
        return "; ".join(parts) or "nothing specific"


class Vocabulary:
    """The catalogue's words: genres (with synonyms), tags, kinds, years. Built once per catalogue."""

    def __init__(self, catalog: Catalog):
        items = list(catalog.items.values())
        by_norm: dict[str, str] = {}
        for g, _ in Counter(g for it in items for g in it.genres).most_common():
            by_norm.setdefault(_norm(g), g)
        self.genres = by_norm
        self.genre_phrases: dict[str, str | None] = {}  # phrase -> catalogue genre (None: unknown here)
        for phrase, keys in GENRE_SYNONYMS.items():
            self.genre_phrases[phrase] = next((by_norm[k] for k in keys if k in by_norm), None)
        for g in by_norm.values():
            if g.lower() not in _TOO_GENERIC and _WORDLIKE.match(g):
                self.genre_phrases.setdefault(g.lower(), g)
        tag_counts = Counter(t.lower() for it in items for t in it.tags)
        self.tags = {t for t in tag_counts if len(t) >= 3 and t not in _FILLER and not t.isdigit() and _WORDLIKE.match(t)
                     and t not in self.genre_phrases and t not in KIND_WORDS}
        self.kinds = {it.kind for it in items}
        years = [it.year for it in items if it.year]
        self.max_year = max(years) if years else None

    @staticmethod
    def phrase_pattern(phrases) -> re.Pattern | None:
        """One regex for phrases, longest first, on word boundaries."""
        phrases = sorted(phrases, key=len, reverse=True)
        if not phrases:
            return None
        return re.compile(r"(?<![\w-])(" + "|".join(re.escape(p) for p in phrases) + r")(?![\w-])")


def vocabulary(catalog: Catalog) -> Vocabulary:
    """The catalogue's :class:`Vocabulary`, built once per catalogue (it reads every item) and
    dropped with it."""
    vocab = _VOCABS.get(catalog)
    if vocab is None:
        vocab = _VOCABS[catalog] = Vocabulary(catalog)
    return vocab


_VOCABS: "weakref.WeakKeyDictionary[Catalog, Vocabulary]" = weakref.WeakKeyDictionary()


def parse_request(text: str | None, catalog: Catalog) -> Constraints:
    """Read ``text`` into constraints over ``catalog`` by rules (no model involved)."""
    request = " ".join((text or "").split())[:MAX_REQUEST_CHARS]
    c = Constraints(request=request)
    if not request:
        return c
    vocab = vocabulary(catalog)
    s = " " + request.lower().replace("\u2019", "'") + " "
    s = _take_reference(s, request, c, catalog)
    s = _take_years(s, c, vocab)
    s = _take_kinds(s, c, vocab)
    s = _take_genres_and_tags(s, c, vocab)
    words = [w for w in re.findall(r"[\w'-]+", s) if w not in _FILLER and not re.fullmatch(r"[-']+", w)]
    c.soft = " ".join(words)
    for lst in (c.genres, c.tags, c.kinds, c.exclude_genres, c.exclude_tags, c.unmet):
        lst[:] = list(dict.fromkeys(lst))
    c.exclude_genres = [g for g in c.exclude_genres if g not in c.genres]
    return c


def retrieval_inputs(query: str | None, catalog: Catalog, has_history: bool,
                     parse: Callable[[str, Catalog], Constraints] | None = None) -> tuple[Constraints | None, str | None]:
    """(parsed request or None, the text the retriever embeds): the soft part of the request, or the
    whole request when nothing else (history, reference item) gives retrieval a start. The one rule
    for :meth:`Recommender.recommend` and the request benchmark (:mod:`mediarec.eval.requests`).
    ``parse``: the reader (default the rules; :mod:`mediarec.rank.request_llm` adds the LLM)."""
    if not (query and query.strip()):
        return None, query
    c = (parse or parse_request)(query, catalog)
    text = c.text_query()
    if text is None and not has_history and c.reference is None:
        text = query
    return c, text


def _blank(s: str, m: re.Match, group: int = 0) -> str:
    return s[: m.start(group)] + " " * (m.end(group) - m.start(group)) + s[m.end(group):]


_REFERENCE = re.compile(r"\b(?:like|similar to|such as|in the vein of|along the lines of|reminds? me of)\s+")
MAX_TITLE_WORDS = 12


def _take_reference(s: str, original: str, c: Constraints, catalog: Catalog) -> str:
    """"like X (but ...)": the longest run of words after "like" that is a catalogue title
    (forgiving case, articles, a year in brackets), so titles with "and" or commas resolve too."""
    for m in _REFERENCE.finditer(s):
        spans = list(re.finditer(r"\S+", s[m.end():]))[:MAX_TITLE_WORDS]
        for n in range(len(spans), 0, -1):
            phrase = s[m.end(): m.end() + spans[n - 1].end()].strip(" ,;.!?")
            key, year = normalize_title(phrase)
            # A bare filler word ("like something") is no title; "The Thing" (article, year) is.
            if not key or phrase.lower() in _FILLER:
                continue
            hits = [catalog.items[i] for i in catalog.title_index.get(key, ())]
            if year is not None:
                hits = [h for h in hits if h.year == year] or hits
            if hits:
                best = hits[0]  # a remake and its original share a key: the first listed
                c.reference, c.reference_title = best.id, best.label
                end = m.end() + spans[n - 1].end()
                return s[: m.start()] + " " * (end - m.start()) + s[end:]
    return s


_DECADE = re.compile(r"(?:from |in )?(?:the )?(?:(1[89]|20)?(\d)0'?s|'(\d)0s)\b")
_DECADE_WORD = re.compile(r"(?:from |in )?(?:the )?\b(" + "|".join(_DECADE_WORDS) + r")\b")
_BEFORE = re.compile(r"\b(?:before|older than|earlier than|pre-?|prior to|up to|until)\s*((?:1[89]|20)\d\d)\b")
_AFTER = re.compile(r"\b(since|after|newer than|later than|post-?|from)\s*((?:1[89]|20)\d\d)\b(?!s)")
_BETWEEN = re.compile(r"\bbetween\s+((?:1[89]|20)\d\d)\s+and\s+((?:1[89]|20)\d\d)\b")
_IN_YEAR = re.compile(r"\b(?:in|of|released in|made in)\s+((?:1[89]|20)\d\d)\b(?!s)")
_RECENT = re.compile(r"\b(recent|newer|latest|new releases?|brand new)\b")


def _take_years(s: str, c: Constraints, vocab: Vocabulary) -> str:
    m = _BETWEEN.search(s)
    if m:
        a, b = sorted((int(m.group(1)), int(m.group(2))))
        c.year_min, c.year_max = a, b
        s = _blank(s, m)
    for m in list(_DECADE.finditer(s)):
        if m.group(3):
            start = 1900 + 10 * int(m.group(3)) if int(m.group(3)) >= 2 else 2000 + 10 * int(m.group(3))
        else:
            century = m.group(1)
            d = int(m.group(2))
            start = int(century) * 100 + 10 * d if century else (1900 + 10 * d if d >= 2 else 2000 + 10 * d)
        _widen(c, start, start + 9)
        s = _blank(s, m)
    for m in list(_DECADE_WORD.finditer(s)):
        start = _DECADE_WORDS[m.group(1)]
        _widen(c, start, start + 9)
        s = _blank(s, m)
    for m in list(_BEFORE.finditer(s)):
        c.year_max = int(m.group(1)) - (0 if "up to" in m.group(0) or "until" in m.group(0) else 1)
        s = _blank(s, m)
    for m in list(_AFTER.finditer(s)):
        c.year_min = int(m.group(2)) + (1 if m.group(1) in ("after", "newer than", "later than") else 0)
        s = _blank(s, m)
    for m in list(_IN_YEAR.finditer(s)):
        c.year_min = c.year_max = int(m.group(1))
        s = _blank(s, m)
    m = _RECENT.search(s)
    if m and vocab.max_year:
        c.year_min = max(c.year_min or 0, vocab.max_year - RECENT_YEARS + 1)
        s = _blank(s, m)
    return s


def _widen(c: Constraints, lo: int, hi: int) -> None:
    """Several decades ("the 80s or 90s") read as the span that covers them."""
    c.year_min = lo if c.year_min is None else min(c.year_min, lo)
    c.year_max = hi if c.year_max is None else max(c.year_max, hi)


def _take_kinds(s: str, c: Constraints, vocab: Vocabulary) -> str:
    pat = Vocabulary.phrase_pattern(KIND_WORDS)
    for m in list(pat.finditer(s)):
        kind = KIND_WORDS[m.group(1)]
        if kind in vocab.kinds:
            if len(vocab.kinds) > 1:  # in a one-kind catalogue "a film" filters nothing
                c.kinds.append(kind)
        else:
            c.unmet.append(m.group(1))
        s = _blank(s, m)
    return s


def _take_genres_and_tags(s: str, c: Constraints, vocab: Vocabulary) -> str:
    """Genres (by synonym) and tags, each asked for or, after a negation, excluded."""
    negated = re.compile(rf"\b{_NEGATION}\s+(?:{_DEGREE}\s+)?(?:of\s+)?(?:the\s+|a\s+|an\s+)?$")
    for pattern, is_genre in ((Vocabulary.phrase_pattern(vocab.genre_phrases), True),
                              (Vocabulary.phrase_pattern(vocab.tags), False)):
        if pattern is None:
            continue
        for m in list(pattern.finditer(s)):
            phrase = m.group(1)
            before = s[max(0, m.start() - 30): m.start()]
            neg = negated.search(before)
            value = vocab.genre_phrases.get(phrase) if is_genre else phrase
            if value is None:
                c.unmet.append(phrase)
            elif is_genre:
                (c.exclude_genres if neg else c.genres).append(value)
            else:
                (c.exclude_tags if neg else c.tags).append(value)
            s = _blank(s, m)
            if neg:  # the negation word is consumed with what it negates
                s = s[: max(0, m.start() - 30) + neg.start()] + " " * (neg.end() - neg.start()) + \
                    s[max(0, m.start() - 30) + neg.end():]
    return s
