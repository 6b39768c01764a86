"""What a request asks for: an English request read into structured :class:`Constraints`.

"something like Alien but funnier, nothing from before 1980" is a reference item (Alien), a genre
(Comedy), a year range (1980-) and no free text. Hard constraints (genres, kinds, years,
exclusions) filter the candidates exactly (:meth:`Constraints.allows`, and
:meth:`Constraints.where` for what Chroma stores). Tags asked for stay soft: tagging is sparse
(a sixth of MovieLens latest-small) and "tense 80s sci-fi" should not mean "only items someone
tagged tense"; they go to the text query, and the items carrying them rank up (TAG_BONUS). "like
Alien but funnier" keeps Alien's character by its genres: comedies with Sci-Fi or Horror rank up,
then those with a near genre (:func:`tiered_candidates`).

Negation has a scope: "nothing with zombies or vampires, something older" excludes both tags up to
the comma, and a negated kind ("no series") or title ("anything but Alien") is excluded too. Relative
words ("older", "darker", "shorter", "less violent", "something else") are read against an anchor:
the reference item, else the items the caller passes (the list a chat user is looking at, or the
history), and the result says what they became ("older than Alien (1979): up to 1978"). Words the
rules cannot read are listed in ``unread`` and shown back; they become search text only when nothing
else (history, reference, a constraint) gives retrieval a start, so they cannot pull it away.

The rule parser knows only the catalogue's own vocabulary (its genres, tags, kinds, titles) plus a
small synonym table, so it never invents a genre the catalogue does not have: words it understands
but the catalogue lacks are listed in ``unmet``. The request is data throughout: nothing in it
is executed or sent anywhere but the embedder (and the reranker's prompt, quoted).
"""

from __future__ import annotations

import re
import weakref
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

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
what do does have has got this time please thanks thank i'm im any anyway okay ok now instead anymore
made released about by nor either""".split())
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
    exclude_kinds: list[str] = Field(default_factory=list)
    exclude_items: list[str] = Field(default_factory=list)  # ids: "anything but Alien", "something else"
    exclude_titles: list[str] = Field(default_factory=list)  # their labels, for people
    exclude_years: list[tuple[int, int]] = Field(default_factory=list)  # "nothing from the 80s"
    reference: str | None = None  # an item id the request compares to ("like Alien but ...")
    reference_title: str | None = None
    # "like Toy Story and Spirited Away": the titles named after the first, compared to as it is
    more_references: list[str] = Field(default_factory=list)
    more_reference_titles: list[str] = Field(default_factory=list)
    kind_of_reference: bool = False  # ``kinds`` is the reference's own (nothing named one)
    # "something by Stanley Kubrick", "nothing by Nolan": the catalogue's people (director, artist,
    # creator in an item's ``extra``); an item must have one of ``people`` and none of ``exclude_people``
    people: list[str] = Field(default_factory=list)
    exclude_people: list[str] = Field(default_factory=list)
    # "like X but Y": items sharing one of X's genres rank first, then those sharing a near genre
    prefer_genres: list[str] = Field(default_factory=list)
    near_genres: list[str] = Field(default_factory=list)
    any_genres: list[str] = Field(default_factory=list)  # at least one must hold (a tier of the above)
    any_tags: list[str] = Field(default_factory=list)  # at least one must hold (the tier of the tags asked for)
    relative: list[str] = Field(default_factory=list)  # relative words not yet read against an anchor
    relative_tags: list[str] = Field(default_factory=list)  # soft tags a relative word asks for ("darker")
    # the genres a relative word left out ("calmer": no Horror, no Thriller): in a chat, a later mood
    # ("happier") replaces them rather than adding to them
    relative_exclude_genres: list[str] = Field(default_factory=list)
    applied: list[str] = Field(default_factory=list)  # what relative words became, for people
    soft: str = ""  # words read as search text (only when nothing else gives retrieval a start)
    unread: list[str] = Field(default_factory=list)  # words the rules did not understand: shown back
    unmet: list[str] = Field(default_factory=list)  # understood, but absent from this catalogue
    # a close call of the embedding fallback: the genres the unread words were nearly as near to, for
    # the LLM to settle (mediarec.rank.request_llm); never applied by themselves
    close_genres: list[str] = Field(default_factory=list)
    parser: str = "rules"  # or "rules+llm" (mediarec.rank.request_llm)
    llm_seconds: float | None = None  # what reading it with the LLM took

    @property
    def is_hard(self) -> bool:
        """Whether anything filters candidates (else the request only steers the ranking)."""
        return bool(self.genres or self.any_genres or self.any_tags or self.year_min is not None
                    or self.year_max is not None or self.kinds or self.exclude_genres or self.exclude_tags
                    or self.exclude_kinds or self.exclude_items or self.exclude_years or self.people or self.exclude_people)

    @property
    def history_ranks(self) -> bool:
        """Whether the history ranks, within the request's filters, as it does without a request (the
        learned stage where one serves): the request was read wholly into filters ("something
        funny", "no horror", "from the 80s") or not read at all ("something for a rainy sunday": its
        words are shown back): nothing for the text side, no reference, no tier to rank up."""
        return self.text_query() is None and self.reference is None and not (
            self.more_references or self.prefer_genres or self.near_genres or self.any_tags)

    @property
    def is_empty(self) -> bool:
        return not (self.is_hard or self.tags or self.reference or self.soft or self.relative_tags)

    def without_filters(self) -> "Constraints":
        """The same request with no hard constraint: the reference item, tags and free text only."""
        return self.model_copy(update={"genres": [], "any_genres": [], "any_tags": [], "kinds": [], "year_min": None, "year_max": None,
                                       "exclude_genres": [], "exclude_tags": [], "exclude_kinds": [],
                                       "exclude_items": [], "exclude_titles": [], "exclude_years": [],
                                       "people": [], "exclude_people": []})

    def exclusions_only(self) -> "Constraints":
        """Only what the request leaves out (a chat bans these by id too)."""
        return Constraints(exclude_genres=self.exclude_genres, exclude_tags=self.exclude_tags,
                           exclude_kinds=self.exclude_kinds, exclude_items=self.exclude_items,
                           exclude_years=self.exclude_years, exclude_people=self.exclude_people)

    def allows(self, item: Item) -> bool:
        """Whether ``item`` satisfies every hard constraint, by its catalogue metadata."""
        genres = {g.lower() for g in item.genres}
        tags = {t.lower() for t in item.tags}
        if any(g.lower() not in genres for g in self.genres):
            return False
        if self.any_genres and not any(g.lower() in genres for g in self.any_genres):
            return False
        if self.any_tags and not any(t.lower() in tags for t in self.any_tags):
            return False
        if self.kinds and item.kind not in self.kinds:
            return False
        if item.kind in self.exclude_kinds or item.id in self.exclude_items:
            return False
        if self.year_min is not None and not (item.year and item.year >= self.year_min):
            return False
        if self.year_max is not None and not (item.year and item.year <= self.year_max):
            return False
        if item.year and any(lo <= item.year <= hi for lo, hi in self.exclude_years):
            return False
        if any(g.lower() in genres for g in self.exclude_genres):
            return False
        if self.people or self.exclude_people:
            who = item_people(item)
            if self.people and who.isdisjoint(p.lower() for p in self.people):
                return False
            if not who.isdisjoint(p.lower() for p in self.exclude_people):
                return False
        return not any(t.lower() in tags for t in self.exclude_tags)

    def where(self) -> dict[str, Any] | None:
        """A Chroma ``where`` filter over the metadata the index stores (kind, year), or None."""
        clauses: list[dict[str, Any]] = []
        if self.kinds:
            clauses.append({"kind": {"$in": list(self.kinds)}})
        if self.exclude_kinds:
            clauses.append({"kind": {"$nin": list(self.exclude_kinds)}})
        if self.year_min is not None:
            clauses.append({"year": {"$gte": int(self.year_min)}})
        if self.year_max is not None:
            clauses.append({"year": {"$lte": int(self.year_max)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def text_query(self) -> str | None:
        """The soft part for the text side: the tags asked for (by the request or a relative word)
        and the words read as search text. A reference's character is kept by its genres
        (:func:`tiered_candidates`), not by text: MiniLM places "Sci-Fi, Horror" near any film."""
        parts = self.tags + self.relative_tags + [self.soft]
        text = " ".join(p for p in parts if p).strip()
        return text or None

    def describe(self) -> str:
        """One line for people: what was read from the request and applied."""
        parts = []
        if self.reference_title:
            parts.append("like " + " and ".join([self.reference_title, *self.more_reference_titles]))
        if self.people:
            parts.append("by " + " or ".join(self.people))
        if self.genres:
            parts.append("genre " + " and ".join(self.genres))
        if self.prefer_genres:
            parts.append("preferring " + " or ".join(self.prefer_genres))
        if self.tags:
            parts.append("about " + ", ".join(self.tags))
        if self.kinds:
            parts.append("kind " + " or ".join(self.kinds)
                         + (" (its kind)" if self.kind_of_reference else ""))
        parts += self.applied
        if self.year_min is not None or self.year_max is not None:
            lo, hi = self.year_min, self.year_max
            parts.append(f"years {lo}-{hi}" if lo is not None and hi is not None
                         else f"from {lo} on" if lo is not None else f"up to {hi}")
        excluded = self.exclude_genres + self.exclude_tags + [f"{k}s" if not k.endswith("s") else k
                                                              for k in self.exclude_kinds]
        excluded += [f"{lo}-{hi}" for lo, hi in self.exclude_years] + self.exclude_titles + self.exclude_people
        if excluded:
            parts.append("no " + ", no ".join(excluded))
        if self.soft:
            parts.append(f"free text {self.soft!r}")
        if self.unmet:
            parts.append("not in this catalogue: " + ", ".join(self.unmet))
        said = "; ".join(parts) or "nothing specific"
        if self.unread:
            said += "; I did not understand " + ", ".join(repr(w) for w in self.unread)
        return said


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
        # "zombie" finds the tag "zombies" and "heists" the tag "heist": the catalogue's tag wins a clash
        self.tag_phrases: dict[str, str] = {t: t for t in self.tags}
        for t in sorted(self.tags, key=lambda t: -tag_counts[t]):
            for v in ((t[:-1],) if t.endswith("s") and len(t) > 4 else (t + "s",)):
                if v not in _FILLER and v not in self.genre_phrases and v not in KIND_WORDS:
                    self.tag_phrases.setdefault(v, t)
        self.tag_counts = tag_counts
        self.tag_kinds: dict[str, set[str]] = {}  # which kinds of item carry each tag ("short tracks": tracks)
        for it in items:
            for t in it.tags:
                self.tag_kinds.setdefault(t.lower(), set()).add(it.kind)
        self.genre_vectors: dict[Any, Any] = {}  # embedder model -> (genre names, label vectors)
        self.kinds = {it.kind for it in items}
        years = [it.year for it in items if it.year]
        self.max_year = max(years) if years else None
        # the catalogue's people: full names ("stanley kubrick", "radiohead") and surnames that name
        # one person only ("kubrick"; not "anderson": Wes or Paul Thomas) -> the name as the catalogue has it
        names = {" ".join(n.lower().split()): n for it in items for n in item_people(it, cased=True)}
        credits: dict[str, set[str]] = {}  # person -> their items
        for it in items:
            for n in item_people(it):
                credits.setdefault(n, set()).add(it.id)
        by_surname: dict[str, set[str]] = {}
        for low in names:
            parts = low.split()
            if len(parts) > 1 and len(parts[-1]) >= 4 and not _PEOPLE_SPLIT.search(low):  # a person, not a credit line
                by_surname.setdefault(parts[-1], set()).add(low)
        self.people: dict[str, list[str]] = {low: [n] for low, n in names.items()}
        for sur, who in by_surname.items():
            shared = set.intersection(*(credits[w] for w in who))  # "Coen": Joel and Ethan, credited together
            if (len(who) == 1 or shared) and sur not in self.people and sur not in _FILLER \
                    and sur not in self.genre_phrases and sur not in self.tag_phrases and sur not in KIND_WORDS:
                self.people[sur] = sorted(names[w] for w in who)

    @staticmethod
    def phrase_pattern(phrases) -> re.Pattern | None:
        """One regex for phrases, longest first, on word boundaries."""
        phrases = sorted(phrases, key=len, reverse=True)
        if not phrases:
            return None
        return re.compile(r"(?<![\w-])(" + "|".join(re.escape(p) for p in phrases) + r")(?![\w-])")


#: ``extra`` fields of an item that name its people (directors, artists, creators)
PEOPLE_FIELDS = ("director", "directors", "artist", "creator", "author", "composer", "band", "performer")
_PEOPLE_SPLIT = re.compile(r"\s*(?:,|&|;|\band\b)\s*")


def item_people(item: Item, cased: bool = False) -> set[str]:
    """The people an item's ``extra`` names, lower-cased unless ``cased``: the whole value ("Simon &
    Garfunkel", "Joel Coen and Ethan Coen") and each part of two words or more ("Joel Coen", "Ethan
    Coen"; never "Fire" of "Earth, Wind & Fire", nor "the Machine" of "Florence and the Machine")."""
    out: set[str] = set()
    for key in PEOPLE_FIELDS:
        value = item.extra.get(key) if item.extra else None
        for v in (value if isinstance(value, (list, tuple)) else [value]):
            if not isinstance(v, str) or len(v.strip()) < 2:
                continue
            names = {" ".join(v.split())}
            names |= {n for n in (" ".join(x.split()) for x in _PEOPLE_SPLIT.split(v))
                      if len(n.split()) >= 2 and n.split()[0].lower() not in ("the", "a", "an")}
            out |= names if cased else {n.lower() for n in names}
    return out


def vocabulary(catalog: Catalog) -> Vocabulary:
    """The catalogue's :class:`Vocabulary`, built once per catalogue (it reads every item) and
    dropped with it."""
    vocab = _VOCABS.get(catalog)
    if vocab is None:
        vocab = _VOCABS[catalog] = Vocabulary(catalog)
    return vocab


_VOCABS: "weakref.WeakKeyDictionary[Catalog, Vocabulary]" = weakref.WeakKeyDictionary()


def parse_request(text: str | None, catalog: Catalog, anchors: Sequence[Item] | None = None,
                  anchor_name: str = "the list") -> Constraints:
    """Read ``text`` into constraints over ``catalog`` by rules (no model involved).

    ``anchors``: what relative words ("older", "something else") compare to when the request names
    no reference item (a chat's last list, or the history); without them those words stay in
    ``relative`` for :func:`resolve_relative`."""
    request = " ".join((text or "").split())[:MAX_REQUEST_CHARS]
    c = Constraints(request=request)
    if not request:
        return c
    vocab = vocabulary(catalog)
    s = " " + request.lower().replace("\u2019", "'") + " "
    s = _take_compared_titles(s, request, c, catalog)
    s = _take_reference(s, request, c, catalog)
    s = _take_than_reference(s, request, c, catalog)
    s = _take_relative(s, c, vocab, _asked_kinds(s, c, catalog, vocab))
    scopes = _negated_scopes(s)
    cased = " " + request.replace("\u2019", "'") + " "
    cased = cased if len(cased) == len(s) else s  # where lowering changed lengths, no case to go by
    s = _take_kinds(s, c, vocab, scopes)
    _kind_of_reference(c, catalog, vocab)
    s = _take_years(s, c, vocab, scopes)
    s = _take_titles(s, c, catalog, scopes, cased, capitalised=True)  # "anything but Alien": the title
    s = _take_people(s, c, vocab, scopes, cased)
    s = _take_genres_and_tags(s, c, vocab, scopes)
    s = _take_titles(s, c, catalog, scopes, cased)
    for a, b in scopes:  # the negation words themselves are read, the scope's own and any inside it
        s = s[:a] + _NEG_CUE.sub(lambda m: " " * len(m.group(0)), s[a:b]) + s[b:]  # ("no X and no Y")
    words = [w for w in re.findall(r"[\w'-]+", s) if w not in _FILLER and not re.fullmatch(r"[-'\d]+", w)]
    c.unread = list(dict.fromkeys(words))
    for lst in (c.genres, c.tags, c.kinds, c.exclude_genres, c.exclude_tags, c.exclude_kinds, c.exclude_items,
                c.exclude_titles, c.unmet, c.relative, c.people, c.exclude_people):
        lst[:] = list(dict.fromkeys(lst))
    c.exclude_genres = [g for g in c.exclude_genres if g not in c.genres]
    c.exclude_tags = [t for t in c.exclude_tags if t not in c.tags]
    keep_character(c, catalog)
    if c.reference is not None or anchors is not None:
        c = resolve_relative(c, catalog, anchors or (), anchor_name)
    return c


# genres close to each other (normalised names): what "keeps the character" of a reference one step away
_NEAR_GENRES: dict[str, tuple[str, ...]] = {
    "scifi": ("fantasy", "adventure", "action"), "horror": ("fantasy", "thriller", "mystery"),
    "fantasy": ("scifi", "adventure", "animation"), "thriller": ("crime", "mystery", "horror", "action"),
    "crime": ("thriller", "mystery", "filmnoir", "neonoir"), "mystery": ("thriller", "crime", "horror"),
    "action": ("adventure", "thriller", "scifi", "war"), "adventure": ("action", "fantasy", "scifi"),
    "drama": ("romance", "history", "biography", "war"), "romance": ("drama",),
    "war": ("history", "action", "drama"), "western": ("adventure", "action"),
    "animation": ("family", "fantasy", "childrens"), "family": ("animation", "childrens"),
    # music, after the usual family trees of the styles (not tuned on any request)
    "rock": ("alternative", "indie", "postrock", "hardrock", "progressiverock", "grunge", "metal", "postpunk",
             "folkrock", "glamrock"),
    "alternative": ("rock", "indie", "postrock", "grunge", "postpunk"), "indie": ("alternative", "rock", "folk"),
    "postrock": ("rock", "ambient", "alternative"), "metal": ("hardrock", "rock"), "hardrock": ("rock", "metal"),
    "grunge": ("alternative", "rock"), "postpunk": ("alternative", "rock"),
    "electronic": ("ambient", "triphop", "downtempo", "techno", "house", "idm"),
    "ambient": ("electronic", "modernclassical", "postrock", "downtempo"), "triphop": ("electronic", "downtempo", "hiphop"),
    "jazz": ("soul", "blues", "funk", "bossanova", "jazzrap"), "soul": ("funk", "jazz", "rnb"), "blues": ("jazz", "soul", "rock"),
    "classical": ("modernclassical", "opera", "soundtrack"), "modernclassical": ("classical", "ambient", "soundtrack"),
    "hiphop": ("jazzrap", "triphop", "soul", "funk"), "folk": ("folkrock", "indie", "singersongwriter"),
    "pop": ("artpop", "indie", "electronic"), "world": ("afrobeat", "latin", "bossanova"),
}


def near_genres(genres: Sequence[str]) -> set[str]:
    """The genres one step from any of ``genres`` (:data:`_NEAR_GENRES`), as normalised names
    (:func:`genre_key`: "postrock" for "Post-Rock")."""
    return {n for g in genres for n in _NEAR_GENRES.get(_norm(g), ())}


def genre_key(genre: str) -> str:
    """A genre's normalised name: "Post-Rock" and "post rock" are "postrock"."""
    return _norm(genre)


def keep_character(c: Constraints, catalog: Catalog) -> Constraints:
    """"like X but Y": X's genres (those Y neither asks for nor leaves out) rank first, then near
    ones; a plain "like X" (no Y) ranks as the retriever does. Sets ``c``'s tiers, returns ``c``."""
    ref = catalog.items.get(c.reference) if c.reference else None
    if ref is None or not (c.genres or c.relative_tags or c.exclude_genres or c.relative or c.applied
                           or c.year_min is not None or c.year_max is not None or c.kinds):
        c.prefer_genres, c.near_genres = [], []
        return c
    vocab = vocabulary(catalog)
    asked = {g.lower() for g in c.genres + c.exclude_genres}
    refs = [ref] + [catalog.items[i] for i in c.more_references if i in catalog.items]  # "like X and Y but Z"
    ref_genres = list(dict.fromkeys(g for r in refs for g in r.genres))
    c.prefer_genres = [g for g in ref_genres if g.lower() not in asked]
    near = [vocab.genres[n] for g in ref_genres for n in _NEAR_GENRES.get(_norm(g), ()) if n in vocab.genres]
    c.near_genres = list(dict.fromkeys(g for g in near if g.lower() not in asked and g not in c.prefer_genres))
    return c


# per tier, in fused-score units (the collaborative side's best is 1): a preference, not a wall.
# Chosen on ML-100k's validation users (eval/results/movielens-100k-like-tiers-val/): the smallest
# bonus whose lists keep X's character (the share of the top 10 sharing a genre with X) within 0.01
# of the most the tiers can give. 0.5 kept it in 0.868 of the top 10 (HR@10 0.401), 1.0 in 0.939
# (HR@10 0.339; tiers wholly in order 0.942, 0.334; no bonus 0.415, 0.548: the held-out target of
# a "like X but Y" request need not share X's character, so HR alone would rank it away).
TIER_BONUS = 1.0
# a tag asked for ("a chill album", "old black and white crime film", "a Tarantino film"): the items
# carrying it come first, then the rest (tags order, they never filter). The fused scores of a request
# with text run to about 6, so a bonus of 1 (as the collaborative side's best) left "a Tarantino film"
# on latest-small with three untagged films first, their text as near to the bare word as any (stop
# 40, tried as a user); 10 orders the carriers first: latest-small's tag requests HR@10 0.904 -> 0.979,
# top-10 share carrying the tag 0.444 -> 0.531, every other request type unchanged
# (eval/results/movielens-latest-small-requests-tag-order/)
TAG_BONUS = 10.0


def _tiers(c: Constraints) -> list[tuple[list[str], list[str], float]]:
    """(genres, tags, bonus over the next tier) of each tier above the rest, best first: items
    carrying a tag the request asks for ("a chill album": albums tagged chill first; tags steer, they
    never filter), then those with one of the reference's genres, then a near genre. A tier that
    names both asks for one of each."""
    tags = list(dict.fromkeys(c.tags + c.relative_tags))
    if tags and c.prefer_genres:
        # "calmer than Alien", "like Toy Story 3 but darker": X's character first, the calm (dark)
        # among it first of all; then X's genres, then the other calm items, then the near genres.
        # Tags first alone ranked calm documentaries above every calm-free Sci-Fi film.
        return [(c.prefer_genres, tags, TAG_BONUS), (c.prefer_genres, [], TIER_BONUS), ([], tags, TAG_BONUS)] + (
            [(c.near_genres, [], TIER_BONUS)] if c.near_genres else [])
    return ([([], tags, TAG_BONUS)] if tags else []) + [(t, [], TIER_BONUS) for t in (c.prefer_genres, c.near_genres)
                                                          if t]


def _bonus(tiers: list[tuple[list[str], list[str], float]], n: int) -> float:
    """What tier ``n`` adds: the bonuses of it and of every tier below it (the rest adds nothing)."""
    return sum(b for _, _, b in tiers[n:])


def character_tiers(c: Constraints | None, catalog: Catalog, item_ids: Sequence[str]):
    """What :func:`tiered_candidates` adds to each item's fused score (aligned with ``item_ids``):
    the bonus of its tier (TAG_BONUS, TIER_BONUS), so a full ranking (the request benchmark) orders as it does."""
    import numpy as np

    out = np.zeros(len(item_ids), dtype=np.float64)
    tiers = _tiers(c) if c is not None else []
    if not tiers:
        return out
    for j, i in enumerate(item_ids):
        it = catalog.items.get(i)
        genres = {g.lower() for g in it.genres} if it is not None else set()
        tags = {t.lower() for t in it.tags} if it is not None else set()
        for n, (tier_genres, tier_tags, _) in enumerate(tiers):
            if ((not tier_genres or genres & {g.lower() for g in tier_genres})
                    and (not tier_tags or tags & {t.lower() for t in tier_tags})):
                out[j] = _bonus(tiers, n)
                break
    return out


def tiered_candidates(retriever: Any, history: Sequence[Any], k: int, query: str | None = None,
                      exclude: Sequence[str] = (), profile: str | None = None,
                      constraints: Constraints | None = None, include_seen: bool = False) -> list[Any]:
    """The retriever's candidates (``include_seen``: liked history items may come back), those that keep a reference's character ranked up ("like Alien but
    funnier": comedies with Alien's Sci-Fi or Horror, then with a near genre, then the rest). A
    candidate's score is its fused score within its tier plus the bonuses of the tiers from its own down."""
    if constraints is None or not _tiers(constraints):
        return retriever.candidates(history, k=k, query=query, exclude=exclude, profile=profile,
                                    constraints=constraints, include_seen=include_seen)
    tiers = _tiers(constraints) + [([], [], 0.0)]
    out: list[Any] = []
    seen = set(exclude)
    for n, (tier_genres, tier_tags, _) in enumerate(tiers):
        c = constraints.model_copy(update={"any_genres": list(tier_genres), "any_tags": list(tier_tags)})
        bonus = _bonus(tiers, n)
        for cand in retriever.candidates(history, k=k, query=query, exclude=list(seen), profile=profile,
                                         constraints=c, include_seen=include_seen):
            out.append(cand.model_copy(update={"score": cand.score + bonus}))
            seen.add(cand.item.id)
    return sorted(out, key=lambda cand: -cand.score)[:k]


# relative words: phrase -> operation (read against an anchor, or on their own)
RELATIVE_WORDS: dict[str, str] = {
    "older": "older", "earlier": "older", "more classic": "older", "less recent": "older", "not as new": "older",
    "older ones": "older", "something older": "older", "old": "older", "vintage": "older", "old-school": "older",
    "newer": "newer", "more recent": "newer", "more modern": "newer", "later": "newer", "less old": "newer",
    "not as old": "newer", "newer ones": "newer", "something newer": "newer",
    "darker": "darker", "grimmer": "darker", "bleaker": "darker", "more serious": "darker", "heavier": "darker",
    "more dark": "darker", "less light": "darker", "grittier": "darker",
    "lighter": "lighter", "less dark": "lighter", "happier": "lighter", "more upbeat": "lighter",
    "less serious": "lighter", "more cheerful": "lighter", "cheerier": "lighter",
    "less depressing": "lighter", "less sad": "lighter", "not as sad": "lighter", "less bleak": "lighter",
    "less grim": "lighter", "less heavy": "lighter", "less gloomy": "lighter",
    "shorter": "shorter", "short": "shorter", "quicker": "shorter", "not too long": "shorter", "brief": "shorter",
    "nothing too long": "shorter", "not long": "shorter", "nothing long": "shorter", "not so long": "shorter",
    "nothing that's too long": "shorter", "not as long": "shorter", "isn't too long": "shorter",
    "isnt too long": "shorter", "is not too long": "shorter", "aren't too long": "shorter", "not very long": "shorter",
    "less violent": "gentler", "not so violent": "gentler", "not as violent": "gentler", "gentler": "gentler",
    "less gory": "gentler", "less brutal": "gentler", "nothing violent": "gentler", "non-violent": "gentler",
    "nonviolent": "gentler", "softer": "gentler",
    "less action": "gentler", "less shooting": "gentler", "fewer explosions": "gentler", "less fighting": "gentler",
    "sadder": "sadder", "more depressing": "sadder", "more melancholy": "sadder", "more melancholic": "sadder",
    "more tragic": "sadder", "more emotional": "sadder", "more moving": "sadder", "more heartbreaking": "sadder",
    "calmer": "calmer", "more relaxing": "calmer", "more relaxed": "calmer", "quieter": "calmer",
    "less intense": "calmer", "not so intense": "calmer", "not as intense": "calmer", "less tense": "calmer",
    "more peaceful": "calmer", "mellower": "calmer", "more mellow": "calmer", "more calm": "calmer",
    "more chill": "calmer", "chiller": "calmer", "slower": "calmer", "more laid-back": "calmer",
    "less stressful": "calmer", "more soothing": "calmer",
    "something else": "else", "something different": "else", "anything else": "else", "other ones": "else",
    "different ones": "else", "others": "else", "different": "else",
}
# what the relative words that need no anchor ask of the catalogue (only what it has is used)
_DARK_TAGS = ("dark", "bleak", "gritty", "noir", "dark comedy", "dark humor", "dark fantasy", "disturbing", "grim",
              "violent", "tense", "nihilistic", "psychological")
_DARK_EXCLUDED = ("family", "childrens", "children")
_LIGHT_TAGS = ("feel-good", "heartwarming", "warm", "uplifting", "lighthearted", "funny", "optimism", "quirky")
_LIGHT_EXCLUDED = ("horror",)
_SHORT_TAGS = ("miniseries", "limited series", "short", "short film", "short tracks", "ep", "single")
_VIOLENT_TAGS = ("violent", "violence", "gore", "gory", "brutal", "ultraviolence", "bloody", "war", "slasher")
_VIOLENT_GENRES = ("horror", "war", "action")
# "calmer": what is tagged calm ranks up; horror, thrillers, action and war are left out
_CALM_TAGS = ("calm", "quiet", "meditative", "peaceful", "serene", "relaxing", "chill", "mellow", "gentle",
              "soothing", "tranquil", "contemplative", "slow burn", "slow cinema", "slow", "cozy", "cosy")
_CALM_EXCLUDED = ("horror", "thriller", "action", "war")
# "sadder": what is tagged sad ranks up; comedies and family films are left out
_SAD_TAGS = ("melancholy", "melancholic", "sad", "grief", "tragic", "tragedy", "tearjerker", "heartbreaking", "elegiac",
             "loss", "bittersweet", "emotional")
_SAD_EXCLUDED = ("comedy", "family", "childrens", "children")
_ANCHORED = {"older", "newer", "else"}
# each relative word that needs no anchor: (the tags it ranks up, the genres it leaves out, how it is said)
_MOODS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "darker": (_DARK_TAGS, _DARK_EXCLUDED, "darker"), "lighter": (_LIGHT_TAGS, _LIGHT_EXCLUDED, "lighter"),
    "shorter": (_SHORT_TAGS, (), "shorter"), "calmer": (_CALM_TAGS, _CALM_EXCLUDED, "calmer"),
    "sadder": (_SAD_TAGS, _SAD_EXCLUDED, "sadder"), "gentler": ((), _VIOLENT_GENRES, "less violent"),
}


def resolve_relative(c: Constraints, catalog: Catalog, anchors: Sequence[Item] = (),
                     anchor_name: str = "the list") -> Constraints:
    """``c`` with its anchored relative words ("older", "newer", "something else") read against the
    reference item, else ``anchors``: a year bound, or the anchors left out. A word with nothing to
    compare to is reported in ``unmet``, never guessed."""
    pending = [op for op in c.relative if op in _ANCHORED]
    if not pending:
        return c
    c = c.model_copy(deep=True)
    c.relative = [op for op in c.relative if op not in _ANCHORED]
    ref = catalog.items.get(c.reference) if c.reference else None
    refs = [ref] + [catalog.items[i] for i in c.more_references if i in catalog.items] if ref is not None else []
    items = refs or [a for a in anchors if a is not None]
    years = sorted(it.year for it in items if it.year)
    year = years[len(years) // 2] if years else None  # the median: "older" than most of the list
    for op in pending:
        name = anchor_name
        if refs:  # "like Star Wars and Raiders but older": older than every title named (newer: than every one)
            dated = sorted((r for r in refs if r.year), key=lambda r: r.year)
            pick = (dated[0] if op == "older" else dated[-1]) if dated else ref
            year, name = pick.year, " and ".join(r.label for r in refs) if len(refs) > 1 else pick.label
        if op == "else":
            ids = [it.id for it in items if it.id not in {r.id for r in refs}]
            if ids:
                c.exclude_items += [i for i in ids if i not in c.exclude_items]
                c.applied.append(f"something else than {name} ({len(ids)} left out)")
            elif ref is None:
                c.unmet.append("something else (nothing shown to differ from)")
        elif year is None:
            c.unmet.append(f"{op} (nothing with a year to compare to)")
        elif op == "older":
            c.year_max = year - 1 if c.year_max is None else min(c.year_max, year - 1)
            c.year_min = None if c.year_min is not None and c.year_min > c.year_max else c.year_min
            c.applied.append(f"older than {name}" + ("" if ref is not None else f" (median {year})"))
        else:
            c.year_min = year + 1 if c.year_min is None else max(c.year_min, year + 1)
            c.year_max = None if c.year_max is not None and c.year_max < c.year_min else c.year_max
            c.applied.append(f"newer than {name}" + ("" if ref is not None else f" (median {year})"))
    return keep_character(c, catalog)


def _asked_kinds(s: str, c: Constraints, catalog: Catalog, vocab: Vocabulary) -> set[str]:
    """The kinds a request is about, before it is read further: the kinds it names outside a
    negation, else the reference item's kind; empty when it names none."""
    pat = Vocabulary.phrase_pattern(KIND_WORDS)
    scopes = _negated_scopes(s)
    kinds = {KIND_WORDS[m.group(1)] for m in pat.finditer(s) if not _negated(scopes, m)} & vocab.kinds
    ref = catalog.items.get(c.reference) if c.reference else None
    return kinds or ({ref.kind} if ref is not None else set())


def _take_relative(s: str, c: Constraints, vocab: Vocabulary, kinds: set[str] = frozenset()) -> str:
    """Relative words: anchored ones wait for :func:`resolve_relative`; the others ("darker",
    "shorter", "less violent") become soft tags and exclusions the catalogue has. ``kinds``: the
    kinds asked for; a tag only items of other kinds carry ("short tracks" for a series) is not used."""
    pat = Vocabulary.phrase_pattern(RELATIVE_WORDS)
    for m in list(pat.finditer(s)):
        if m.group(1) == "old" and re.search(r"(?:years?|months?)\s+$", s[: m.start(1)]):
            continue  # "my six year old": an age, not an era
        op = RELATIVE_WORDS[m.group(1)]
        s = _blank(s, m)
        if op in _ANCHORED:
            c.relative.append(op)
            continue
        tags, genres, label = _MOODS[op]
        have = [t for t in tags if t in vocab.tags and (not kinds or vocab.tag_kinds.get(t, set()) & kinds)]
        excluded = [vocab.genres[g] for g in genres if g in vocab.genres]
        if op == "gentler":
            excluded_tags = [t for t in _VIOLENT_TAGS if t in vocab.tags]
            c.exclude_tags += excluded_tags
            have = []
        else:
            excluded_tags = []
        c.relative_tags += [t for t in have if t not in c.relative_tags]
        c.relative_exclude_genres += [g for g in excluded if g not in c.exclude_genres]
        c.exclude_genres += [g for g in excluded if g not in c.exclude_genres]
        if have or excluded or excluded_tags:
            c.applied.append(label + (" (" + ", ".join(have) + ")" if have else ""))
        else:
            c.unmet.append(f"{m.group(1)} (this catalogue has no {'lengths' if op == 'shorter' else 'such tags'})")
    return s


# Negation and its scope: the cue, then everything up to a clause break ("nothing with zombies or
# vampires, something older" leaves out zombies and vampires, not "older").
_NEG_CUE = re.compile(
    r"(?<![\w'-])(?:anything but|everything but|anything except|everything except|anything other than|but not|"
    r"other than|apart from|except for|except|instead of|rather than|not another|not any more|not anymore|"
    r"no more|nothing with|nothing about|nothing involving|nothing featuring|nothing that has|nothing|"
    r"without any|without|not|no|none of the|none|neither|avoid|skip|never|exclude|ban|drop|hide|free of|less|unlike|"
    r"(?:i )?(?:hate|dislike|can't stand|cannot stand)|(?:i )?(?:don't|do not|dont) (?:want|like|need)|"
    r"(?:i'm )?(?:not into|sick of|tired of|done with)|spare me|(?:that |which |who )?(?:isn't|isnt|aren't|arent|"
    r"wasn't|weren't|is not|are not|was not|were not|that's not|thats not))"
    r"(?:\s+(?:too|so|very|overly|any|anything|really|particularly|of|with|about|the|a|an|another|more|that|is|are|"
    r"involving|featuring|containing|having|has))*(?![\w'-])")
_SCOPE_END = re.compile(r"[,;.!?()]|(?<![\w'-])(?:but|though|although|yet|instead|rather|something|anything|"
                        r"someone|just|only|please|pls|thanks|want|give|show|i'd|i|like|similar|prefer|maybe)(?![\w'-])")


def _negated_scopes(s: str) -> list[tuple[int, int]]:
    """(start, end) of each negation: the cue and what it negates, up to a clause break."""
    scopes = []
    for m in _NEG_CUE.finditer(s):
        if scopes and m.start() < scopes[-1][1]:
            continue
        end = _SCOPE_END.search(s, m.end())
        scopes.append((m.start(), end.start() if end else len(s)))
    return scopes


def _negated(scopes: list[tuple[int, int]], m: re.Match, group: int = 0) -> bool:
    return any(a <= m.start(group) and m.end(group) <= b for a, b in scopes)


SIMILAR_MIN = 0.30  # cosine of the best genre label to the unread words, at least
SIMILAR_MARGIN = 0.06  # and ahead of the second best by this much (MiniLM; chosen on eval DEV_PARAPHRASES)
# closer than that, the nearest genres go to the LLM, if one reads requests (on DEV_PARAPHRASES all 15
# close calls had the right genre among the nearest two; qwen2.5-coder-0.5b chose it in 8)
CLOSE_GENRES = 2

# What each genre is about, after the encyclopaedia's definitions of the film and music genres (normalised
# genre name -> short phrases). A genre's name alone ("Western") is far, for MiniLM, from the words people
# use for it ("gunslingers in a dusty town"); its description is near. The fallback reads unread words as
# the genre whose name or description they are clearly nearest to. Written as definitions, not from any
# request; the thresholds above are chosen on DEV_PARAPHRASES only.
GENRE_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "comedy": ("humor and jokes that make the audience laugh", "an amusing, funny story"),
    "horror": ("fear, dread and terror: monsters, ghosts, the supernatural", "a frightening story meant to scare"),
    "scifi": ("science fiction: space travel, aliens, robots, time travel", "the future, advanced technology"),
    "romance": ("a love story: romantic relationships and falling in love", "passion and courtship between lovers"),
    "action": ("fights, chases, explosions and stunts", "a hero in violent physical conflict"),
    "thriller": ("suspense, tension and excitement", "danger, twists and a race against time"),
    "drama": ("serious, realistic characters facing emotional conflict", "a moving story of personal struggle"),
    "war": ("warfare: soldiers, battles and combat", "armies at war"),
    "western": ("the American Old West frontier: cowboys and outlaws", "gunfighters, sheriffs and horses"),
    "musical": ("characters sing songs and dance", "a story told with music, singing and dance numbers"),
    "crime": ("criminals, gangsters, heists and the police", "robbery, murder and the criminal underworld"),
    "mystery": ("a detective solving a crime from clues", "a puzzling murder: whodunit, investigation"),
    "fantasy": ("magic, wizards and mythical creatures", "an imaginary world of legends and sorcery"),
    "adventure": ("a journey or quest to exotic places", "exploration, treasure and daring expeditions"),
    "documentary": ("non-fiction: real people and real events", "a factual film with interviews and footage"),
    "animation": ("animated cartoons: drawn, stop-motion or computer-animated", "moving drawings and puppets"),
    "childrens": ("a film for children and young kids", "suitable for the whole family and little ones"),
    "children": ("a film for children and young kids", "suitable for the whole family and little ones"),
    "family": ("suitable for the whole family, children and parents", "a film for kids"),
    "filmnoir": ("1940s black-and-white crime films: cynical detectives and femmes fatales",),
    "jazz": ("jazz: swing, improvisation, saxophone and trumpet",),
    "rock": ("rock music: electric guitars, drums and bands",),
    "electronic": ("electronic music: synthesizers, beats and dance",),
    "classical": ("classical music: orchestras, symphonies and composers",),
    "hiphop": ("hip hop: rap, rhymes and beats",),
    "ambient": ("ambient music: calm, atmospheric, relaxing soundscapes",),
    "folk": ("folk music: acoustic guitars and traditional songs",),
    "metal": ("heavy metal: loud distorted guitars",),
    "pop": ("pop music: catchy songs and hits",),
    "soul": ("soul music: rhythm and blues singing",),
}


# How people frame a request ("I'd like", "could you find me", "in the mood for", "tonight"): no
# content. Left in, they pull the embedding of a short wish toward the same few genres. "something"
# stays: on DEV_PARAPHRASES dropping it too reads 57 right (3 wrong) against 54 (3), but it turns
# bare phrases the fallback left unread into wrong genres ("something with cowboys": Fantasy).
_FRAMING = re.compile(
    r"(?<![\w'-])(?:i'd|i would|i'd really|i really|we'd|i|we) (?:like|love|want|fancy)(?: to (?:see|watch|hear))?"
    r"|(?<![\w'-])(?:(?:could|can|would) you )?(?:please )?(?:find|show|give|get|recommend|suggest)(?: me| us)?"
    r"|(?<![\w'-])(?:i'm |i am |we're )?(?:in the mood for|looking for|up for|searching for)"
    r"|(?<![\w'-])(?:please|tonight|today|now|thanks)(?![\w'-])")


def _content(request: str) -> str:
    """The request without its framing words, for embedding; the request itself if nothing is left."""
    text = " ".join(_FRAMING.sub(" ", request.lower()).split()).strip(" ,.!?")
    return text or request


def read_by_similarity(c: Constraints, catalog: Catalog, embed: Callable[[list[str]], Any]) -> Constraints:
    """Without an LLM: words the rules left unread, read as the catalogue genre whose name they are
    nearest to by embedding ("something to make me laugh" is Comedy), only when that genre is
    clearly nearest; else they stay unread. Only when the rules read nothing else."""
    if not c.unread or c.genres:
        return c
    import numpy as np

    vocab = vocabulary(catalog)
    names = [g for g in vocab.genres.values() if _WORDLIKE.match(g) and g.lower() not in _TOO_GENERIC]
    if len(names) < 2:
        return c
    # by the embedder's model (id() of a bound method is reused once the method object is gone)
    key = getattr(getattr(embed, "__self__", None), "model_name", None) or embed
    labels = vocab.genre_vectors.get(key)
    if labels is None:
        texts, owner = [], []
        for n, g in enumerate(names):
            said = [g, f"a {g.lower()} film", *GENRE_DESCRIPTIONS.get(_norm(g), ())]
            texts += said
            owner += [n] * len(said)
        vecs = np.asarray(embed(texts), dtype=np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        labels = vocab.genre_vectors[key] = (names, vecs, np.asarray(owner))
    names, vecs, owner = labels
    if c.is_hard or c.tags or c.reference or c.relative_tags or c.applied or _unmet_beyond_kinds(c):
        return c  # beside what was read, unread words are modifiers ("for studying"), not a genre
    if _any_negated(c.request, c.unread):
        return c  # "not another superhero movie": words said against are never read as wanted; shown back
    phrase = _content(c.request)
    q = np.asarray(embed([phrase]), dtype=np.float32)[0]
    q /= max(float(np.linalg.norm(q)), 1e-12)
    sims = np.full(len(names), -1.0, dtype=np.float32)
    np.maximum.at(sims, owner, vecs @ q)  # a genre is as near as its nearest name or description
    order = np.argsort(-sims)
    best, second = float(sims[order[0]]), float(sims[order[1]])
    if best < SIMILAR_MIN:
        return c
    if best - second < SIMILAR_MARGIN:  # too close to call here: the two nearest, for the LLM to choose from
        close = [names[int(j)] for j in order[:CLOSE_GENRES] if names[int(j)] not in c.exclude_genres]
        return c.model_copy(update={"close_genres": close})
    g = names[int(order[0])]
    if g in c.exclude_genres:
        return c
    out = c.model_copy(deep=True)
    out.genres = [g]
    out.applied.append(f"{' '.join(c.unread)!r} read as {g} by similarity")
    out.unread = []
    out.parser = c.parser + "+similarity"
    return keep_character(out, catalog)


def _any_negated(request: str, words: Sequence[str]) -> bool:
    """Whether one of ``words`` stands inside a negation's scope in ``request``."""
    s = " " + request.lower().replace("\u2019", "'") + " "
    scopes = _negated_scopes(s)
    return any(_negated(scopes, m) for w in words
               for m in re.finditer(r"(?<![\w'-])" + re.escape(w) + r"(?![\w'-])", s))


def _unmet_beyond_kinds(c: Constraints) -> bool:
    """Whether the rules understood something this catalogue lacks other than a kind: "a story told
    through songs" in a film catalogue names no kind it has, yet its words may still name a genre."""
    return any(u not in KIND_WORDS for u in c.unmet)


def retrieval_inputs(query: str | None, catalog: Catalog, has_history: bool,
                     parse: Callable[[str, Catalog], Constraints] | None = None,
                     anchors: Sequence[Item] = (), anchor_name: str = "your history",
                     embed: Callable[[list[str]], Any] | None = None
                     ) -> tuple[Constraints | None, str | None]:
    """(parsed request or None, the text the retriever embeds): the read part of the request (the
    reference's character, tags), or the whole request when nothing else (history, reference item,
    a constraint) gives retrieval a start; unread words never steer it otherwise. Relative words are
    read against ``anchors`` (the history, for ``mediarec recommend``). The one rule for
    :meth:`Recommender.recommend` and the request benchmark (:mod:`mediarec.eval.requests`).
    ``parse``: the reader (default the rules; :mod:`mediarec.rank.request_llm` adds the LLM);
    ``embed``: an embedder for :func:`read_by_similarity` (words the reader left unread)."""
    if not (query and query.strip()):
        return None, query
    c = (parse or parse_request)(query, catalog)
    c = resolve_relative(c, catalog, anchors, anchor_name)
    if embed is not None:
        c = read_by_similarity(c, catalog, embed)
    text = c.text_query()
    if text is None and not has_history and c.reference is None:
        text = query
    return c, text


def _blank(s: str, m: re.Match, group: int = 0) -> str:
    return s[: m.start(group)] + " " * (m.end(group) - m.start(group)) + s[m.end(group):]


# "like X" compares to X; "I'd like X" / "I would like X" / "would like" is a wish, not a comparison
_REFERENCE = re.compile(r"\b(?<!i'd )(?<!id )(?<!would )(?<!we'd )"
                        r"(?:like|similar to|such as|in the vein of|along the lines of|reminds? me of|"
                        r"as good as|on a par with|on par with)\s+")
_NOT_LIKE = re.compile(r"(?:\bnothing|\bnot|\bno(?:thing)? more|\bnone|\banything but)\s+(?:\w+\s+)?$")
MAX_TITLE_WORDS = 12


def _title_at(s: str, start: int, catalog: Catalog, end_limit: int | None = None,
              allow_common: bool = False) -> tuple[list[Item], int] | None:
    """The longest run of words from ``start`` that is a catalogue title: (its items, where it ends)."""
    spans = list(re.finditer(r"\S+", s[start:end_limit]))[:MAX_TITLE_WORDS]
    for n in range(len(spans), 0, -1):
        phrase = s[start: start + spans[n - 1].end()].strip(" ,;.!?")
        key, year = normalize_title(phrase)
        # A bare filler word ("like something") is no title; "The Thing" (article, year) is.
        if not key or (not allow_common and (phrase.lower() in _FILLER or phrase.lower() in _NOT_TITLES)):
            continue
        hits = [catalog.items[i] for i in catalog.title_index.get(key, ())]
        if year is not None:
            hits = [h for h in hits if h.year == year] or hits
        if hits:
            return hits, start + spans[n - 1].end()
    return None


_NOT_TITLES = {"more", "else", "other", "another", "one", "ones", "it", "that", "this", "me", "up", "us", "her",
               "him", "them", "those", "these", "older", "newer", "later", "less", "different", "so", "too"}


def _take_reference(s: str, original: str, c: Constraints, catalog: Catalog) -> str:
    """"like X (but ...)": the longest run of words after "like" that is a catalogue title
    (forgiving case, articles, a year in brackets), so titles with "and" or commas resolve too.
    "nothing like X" leaves X out instead."""
    for m in _REFERENCE.finditer(s):
        found = _title_at(s, m.end(), catalog)
        if found is None:
            continue
        hits, end = found
        neg = _NOT_LIKE.search(s[: m.start()])
        if neg:  # "nothing like Alien": Alien (and its remakes) left out, not a reference
            c.exclude_items += [h.id for h in hits]
            c.exclude_titles.append(hits[0].label)
            return s[: neg.start()] + " " * (end - neg.start()) + s[end:]
        best = hits[0]  # a remake and its original share a key: the first listed
        c.reference, c.reference_title = best.id, best.label
        while ((more := (_AFTER_COMMA if s[end - 1] == "," else _MORE_TITLES).match(s, end))
               and (found := _title_at(s, more.end(), catalog))):
            hits, end = found  # "like Toy Story and Spirited Away", "like Alien, Aliens or Prey"
            if hits[0].id != c.reference and hits[0].id not in c.more_references:
                c.more_references.append(hits[0].id)
                c.more_reference_titles.append(hits[0].label)
        return s[: m.start()] + " " * (end - m.start()) + s[end:]
    return s


# between two titles of one comparison: "like X and Y", "like X, Y or Z", "like X & Y"
_MORE_TITLES = re.compile(r"\s*(?:,\s*(?:and\s+|or\s+)?|\s(?:and|or|&|and also|plus)\s+)")
_AFTER_COMMA = re.compile(r"\s*(?:(?:and|or|plus)\s+)?")  # a title's run took the comma that follows it


# "older than Get Out", "newer than Alien", "before The Matrix": a year bound from a named title
_COMPARED = re.compile(r"\b(?:(older|earlier|less recent|newer|later|more recent|more modern)\s+than"
                       r"|(before|after))\s+(?=\S)")
_COMPARED_OPS = {"older": "older", "earlier": "older", "less recent": "older", "before": "older",
                 "newer": "newer", "later": "newer", "more recent": "newer", "more modern": "newer", "after": "newer"}


# "calmer than Alien", "funnier than Get Out", "less violent than Heat": the title is the reference, as
# "like Alien but calmer" (the comparative itself is read on its own); "older than" was read above
_THAN_TITLE = re.compile(r"\b(?:(?:more|less)\s+[\w'-]+|[\w'-]+er)(?:\s+(?:film|movie|series|show|album|record|"
                         r"song|track|one|thing|story|watch|listen))?\s+than\s+(?=\S)")
_THAN_SHOWN = re.compile(r"(?:that|this|those|these|them|it|the last ones?|the others|before)(?![\w'-])")
_NOT_COMPARATIVES = {"other", "rather", "older", "newer", "later", "earlier", "ever", "never", "whether", "over",
                     "under", "after", "either", "neither"}


def _take_than_reference(s: str, original: str, c: Constraints, catalog: Catalog) -> str:
    """"something calmer than Alien": Alien becomes the reference (its character kept, the
    comparative applied to it), and "than Alien" is read rather than left as unread words. Inside a
    negation ("nothing scarier than Alien") it is not a reference; the request names none yet."""
    if c.reference is not None:
        return s
    scopes = _negated_scopes(s)
    for m in _THAN_TITLE.finditer(s):
        # negated by a cue before it ("nothing scarier than"); its own "less" is no negation here
        if m.group(0).split()[0] in _NOT_COMPARATIVES or any(a < m.start() and m.end() <= b for a, b in scopes):
            continue
        start = m.start() + m.group(0).rfind("than")
        pronoun = _THAN_SHOWN.match(s, m.end())
        if pronoun:  # "funnier than that": the list shown is the anchor already; nothing to take
            return s[:start] + " " * (pronoun.end() - start) + s[pronoun.end():]
        found = _title_at(s, m.end(), catalog)
        if found is None:
            unknown = _capitalised_run(original, s, m.end())
            if unknown is not None:  # "happier than Manchester by the Sea", a film this catalogue lacks
                name, end = unknown
                c.unmet.append(f"{name} (no such title here to compare with)")
                return s[:start] + " " * (end - start) + s[end:]
            continue
        hits, end = found
        c.reference, c.reference_title = hits[0].id, hits[0].label
        return s[:start] + " " * (end - start) + s[end:]
    return s


def _capitalised_run(original: str, s: str, start: int) -> tuple[str, int] | None:
    """The words from ``start`` up to a clause break, when the request wrote the first one with a
    capital (a title the catalogue does not have, not "usual"): (them as written, where they end)."""
    cased = " " + original.replace("\u2019", "'") + " "
    if len(cased) != len(s) or not cased[start:start + 1].isupper():
        return None
    stop = re.compile(r"[,;.!?()]|\s(?:but|and|or|with|without|from|please|that|which|nothing|not|no)\s")
    cut = stop.search(s, start)
    end = len(s.rstrip()) if cut is None else cut.start()
    name = cased[start:end].strip()
    return (name, end) if name else None


def _kind_of_reference(c: Constraints, catalog: Catalog, vocab: Vocabulary) -> None:
    """"something like Kid A" in a catalogue of films and albums means albums: the reference's kind,
    unless the request names a kind itself ("a film like Kid A") or leaves one out."""
    ref = catalog.items.get(c.reference) if c.reference else None
    if ref is None or not ref.kind or c.kinds or c.exclude_kinds or len(vocab.kinds) < 2:
        return
    c.kinds = [ref.kind]
    c.kind_of_reference = True


def _take_compared_titles(s: str, original: str, c: Constraints, catalog: Catalog) -> str:
    """"older than Get Out": up to the year before Get Out's, with the title read as that anchor
    rather than split into words ("out") or replaced by the history; "older than 1990" likewise,
    before "older" is read on its own. Negated ("nothing older than Alien") the bound flips and
    includes the year. After "before"/"after" only a capitalised title counts ("after Alien", not
    "after dinner")."""
    cased = " " + original.replace("\u2019", "'") + " "
    cased = cased if len(cased) == len(s) else s
    scopes = _negated_scopes(s)
    for m in list(_COMPARED.finditer(s)):
        neg = _negated(scopes, m)
        older = (_COMPARED_OPS[m.group(1) or m.group(2)] == "older") != neg
        year = re.match(r"((?:1[89]|20)\d\d)\b(?!s)", s[m.end():])
        if year:
            if not m.group(1):  # "before 1990" is read with the other years
                continue
            ref_year, label, end = int(year.group(1)), None, m.end() + year.end()
        else:
            if m.group(2) and not cased[m.end():m.end() + 1].isupper():
                continue
            found = _title_at(s, m.end(), catalog)
            if found is None:
                continue
            hits, end = found
            ref_year, label = hits[0].year, hits[0].label
            if not ref_year:
                c.unmet.append(f"{m.group(0).strip()} {label} (it has no year)")
        if ref_year and older:
            bound = ref_year if neg else ref_year - 1
            c.year_max = bound if c.year_max is None else min(c.year_max, bound)
        elif ref_year:
            bound = ref_year if neg else ref_year + 1
            c.year_min = bound if c.year_min is None else max(c.year_min, bound)
        if ref_year and label:
            c.applied.append(f"{('not newer' if neg else 'older') if older else ('not older' if neg else 'newer')} "
                             f"than {label}")
        s = s[: m.start()] + " " * (end - m.start()) + s[end:]
    return s


def _take_titles(s: str, c: Constraints, catalog: Catalog, scopes: list[tuple[int, int]], cased: str,
                 capitalised: bool = False) -> str:
    """Titles inside a negation ("anything but Alien", "not another Toy Story"): left out. A
    capitalised one is read first, as a title even where it is a tag or a common word ("not Up")."""
    for a, b in scopes:
        cue = _NEG_CUE.match(s, a)
        pos = cue.end() if cue else a
        while pos < b:
            upper = cased[pos:pos + 1].isupper()
            found = _title_at(s, pos, catalog, b, allow_common=upper) if upper or not capitalised else None
            if found is not None:
                hits, end = found
                c.exclude_items += [h.id for h in hits]
                c.exclude_titles.append(hits[0].label if len(hits) == 1 else hits[0].title)
                s = s[:pos] + " " * (end - pos) + s[end:]
                pos = end
                continue
            nxt = re.search(r"\s\S", s[pos:b])
            if nxt is None:
                break
            pos += nxt.start() + 1
    return s


_DECADE = re.compile(r"(?:from |in )?(?:the )?(?:(1[89]|20)?(\d)0'?s|'(\d)0s)\b")
_DECADE_WORD = re.compile(r"(?:from |in )?(?:the )?\b(" + "|".join(_DECADE_WORDS) + r")\b")
_BEFORE = re.compile(r"\b(?:before|older than|earlier than|pre-?|prior to|up to|until)\s*((?:1[89]|20)\d\d)\b")
_AFTER = re.compile(r"\b(since|after|newer than|later than|post-?|from)\s*((?:1[89]|20)\d\d)\b(?!s)")
_BETWEEN = re.compile(r"\bbetween\s+((?:1[89]|20)\d\d)\s+and\s+((?:1[89]|20)\d\d)\b")
_IN_YEAR = re.compile(r"\b(?:in|of|released in|made in)\s+((?:1[89]|20)\d\d)\b(?!s)")
_RECENT = re.compile(r"\b(recent|latest|new releases?|brand new)\b")


# what goes before a person's name: "directed by", "a film by", "made by"
_BY_PERSON = re.compile(r"(?:\b(?:directed|made|written|composed|performed|created|sung|played|produced|shot)\s+)?"
                        r"\bby\s+$|\b(?:director|artist|band|filmmaker|composer)\s+$")


_AFTER_PERSON = re.compile(r"(?:'s)?\s+(?:brothers|sisters|siblings)\b|'s\b")


def find_people(text: str, people: dict[str, list[str]], cased: str | None = None) -> list[tuple[int, int, str]]:
    """(start, end, lower-cased name) of each of the catalogue's ``people`` in ``text``, longest first
    from each word (a dictionary look-up of up to five words: a catalogue may name 100,000 people).
    A one-word name counts only where ``cased`` (the text as written, same positions) capitalises it."""
    words = list(re.finditer(r"\S+", text))
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(words):
        for n in range(min(5, len(words) - i), 0, -1):
            a, b = words[i].start(), words[i + n - 1].end()
            phrase = text[a:b].rstrip(".,;:!?\"')")
            phrase = phrase[:-2] if phrase.lower().endswith(("'s", "’s")) else phrase
            key = " ".join(phrase.lower().split())
            if key in people and (n > 1 or cased is None or cased[a:a + 1].isupper()):
                out.append((a, a + len(phrase), key))
                i += n
                break
        else:
            i += 1
    return out


def _take_people(s: str, c: Constraints, vocab: Vocabulary, scopes: list[tuple[int, int]], cased: str) -> str:
    """The catalogue's people a request names ("by Stanley Kubrick", "Miyazaki films", "nothing by
    Nolan": left out). A one-word name counts only capitalised ("Nolan", not "nolan"), so a band called
    Air or Low never reads "low-key" or "in the air"."""
    if not vocab.people:
        return s
    for start, end, key in find_people(s, vocab.people, cased):
        negated = any(a <= start and end <= b for a, b in scopes)
        (c.exclude_people if negated else c.people).extend(vocab.people[key])
        by = _BY_PERSON.search(s[:start])
        if by:
            start = by.start()
        after = _AFTER_PERSON.match(s, end)  # "the Coen brothers"
        if after:
            end = after.end()
        s = s[:start] + " " * (end - start) + s[end:]
    return s


def _take_years(s: str, c: Constraints, vocab: Vocabulary, scopes: list[tuple[int, int]] = ()) -> str:
    """Decades and years; inside a negation they flip ("nothing before 1980" is 1980 on) or, for a
    span ("no 80s films"), leave it out."""
    m = _BETWEEN.search(s)
    if m:
        a, b = sorted((int(m.group(1)), int(m.group(2))))
        if _negated(scopes, m):
            c.exclude_years.append((a, b))
        else:
            c.year_min, c.year_max = a, b
        s = _blank(s, m)
    for m in list(_DECADE.finditer(s)):
        if m.group(3):
            start = 1900 + 10 * int(m.group(3)) if int(m.group(3)) >= 2 else 2000 + 10 * int(m.group(3))
        else:
            century = m.group(1)
            d = int(m.group(2))
            start = int(century) * 100 + 10 * d if century else (1900 + 10 * d if d >= 2 else 2000 + 10 * d)
        if _negated(scopes, m):
            c.exclude_years.append((start, start + 9))
        else:
            _widen(c, start, start + 9)
        s = _blank(s, m)
    for m in list(_DECADE_WORD.finditer(s)):
        start = _DECADE_WORDS[m.group(1)]
        if _negated(scopes, m):
            c.exclude_years.append((start, start + 9))
        else:
            _widen(c, start, start + 9)
        s = _blank(s, m)
    for m in list(_BEFORE.finditer(s)):
        inclusive = "up to" in m.group(0) or "until" in m.group(0)
        if _negated(scopes, m):  # "nothing before 1980": 1980 on
            c.year_min = int(m.group(1)) + (1 if inclusive else 0)
        else:
            c.year_max = int(m.group(1)) - (0 if inclusive else 1)
        s = _blank(s, m)
    for m in list(_AFTER.finditer(s)):
        strict = m.group(1) in ("after", "newer than", "later than")
        if _negated(scopes, m):  # "nothing after 2000": up to 2000
            c.year_max = int(m.group(2)) - (0 if strict else 1)
        else:
            c.year_min = int(m.group(2)) + (1 if strict else 0)
        s = _blank(s, m)
    for m in list(_IN_YEAR.finditer(s)):
        if _negated(scopes, m):
            c.exclude_years.append((int(m.group(1)), int(m.group(1))))
        else:
            c.year_min = c.year_max = int(m.group(1))
        s = _blank(s, m)
    m = _RECENT.search(s)
    if m and vocab.max_year:
        if _negated(scopes, m):
            c.year_max = vocab.max_year - RECENT_YEARS
        else:
            c.year_min = max(c.year_min or 0, vocab.max_year - RECENT_YEARS + 1)
        s = _blank(s, m)
    return s


def _widen(c: Constraints, lo: int, hi: int) -> None:
    """Several decades ("the 80s or 90s") read as the span that covers them."""
    c.year_min = lo if c.year_min is None else min(c.year_min, lo)
    c.year_max = hi if c.year_max is None else max(c.year_max, hi)


def _take_kinds(s: str, c: Constraints, vocab: Vocabulary, scopes: list[tuple[int, int]] = ()) -> str:
    pat = Vocabulary.phrase_pattern(KIND_WORDS)
    for m in list(pat.finditer(s)):
        kind = KIND_WORDS[m.group(1)]
        if kind in vocab.kinds:
            if _negated(scopes, m) and not _only_kind_word(s, m, scopes):
                c.exclude_kinds.append(kind)
            elif len(vocab.kinds) > 1 and not _negated(scopes, m):  # in a one-kind catalogue "a film" filters nothing
                c.kinds.append(kind)
        elif not _negated(scopes, m):
            c.unmet.append(m.group(1))
        s = _blank(s, m)
    return s


def _only_kind_word(s: str, m: re.Match, scopes: list[tuple[int, int]]) -> bool:
    """Whether a kind word inside a negation only names what is negated ("no horror films" leaves
    out horror, not films): other words precede it in the scope."""
    for a, b in scopes:
        if a <= m.start() and m.end() <= b:
            cue = _NEG_CUE.match(s, a)
            between = s[cue.end() if cue else a: m.start()]
            return bool(re.search(r"\w", re.sub(r"(?<![\w'-])(?:or|and|nor|neither)(?![\w'-])", " ", between)))
    return False


def _take_genres_and_tags(s: str, c: Constraints, vocab: Vocabulary, scopes: list[tuple[int, int]] = ()) -> str:
    """Genres (by synonym) and tags, each asked for or, inside a negation, excluded."""
    for pattern, is_genre in ((Vocabulary.phrase_pattern(vocab.genre_phrases), True),
                              (Vocabulary.phrase_pattern(vocab.tag_phrases), False)):
        if pattern is None:
            continue
        for m in list(pattern.finditer(s)):
            phrase = m.group(1)
            neg = _negated(scopes, m, 1)
            value = vocab.genre_phrases.get(phrase) if is_genre else vocab.tag_phrases[phrase]
            if value is None:
                c.unmet.append(phrase)
            elif is_genre:
                (c.exclude_genres if neg else c.genres).append(value)
            else:
                (c.exclude_tags if neg else c.tags).append(value)
            s = _blank(s, m)
    return s
