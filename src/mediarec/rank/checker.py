"""A reason checker in code (the LLM never judges itself), and template reasons that are true by
construction.

:meth:`ReasonChecker.check` reads every claim a reason makes and checks it against the catalog and
the user's *liked* history (:func:`mediarec.rank.evidence.split_history`); a reason passes when
it is a sentence, not an echo of the prompt, cites something the models found, and every claim
is true. The claims (:class:`Claim`, kinds :data:`CLAIM_KINDS`):

* **subject**: "S is a …": S is exactly the item's title ("Dune: Part Two is …" on Dune is false:
  a prefilled title continued into another one);
* **genre** and **kind**: what follows "is a" / "it is" ("a horror drama", "a family series")
  are the item's own genres and kind; any other genre word of the catalog's list is the item's or
  a liked item's;
* **era**: "from the 1990s" / "from 1997" is the item's decade or year;
* a reason that says what the item is without its genre ("X is a movie from the 1990s", "X is
  from the 1980s, liked by ...") does not pass when the item has genres (``NO_GENRE``: it is
  asked for again, told which genre to say); a title said as what the item is ("X is a <title>
  animation") is a false genre claim;
* **like**: "…, like Y": Y is a liked item (not the item, not a disliked one) that shares every
  genre, era and kind the clause claims (and at least one genre when it claims none);
* **count**: "like 3 items you liked" is the number of distinct liked items with what the clause
  claims (not plays);
* **liked** / **disliked**: "you liked", "your history" need a liked history; a history title
  named is liked unless the reason says it was disliked ("unlike X, which you disliked"), and then it is;
* **co-liked**: "people who liked Y" (Y liked) also liked the item, in the catalog's log: at least
  ``MIN_CO_LIKED`` (2) other users liked both;
* **request**, **popularity**: the request matches; "N of the catalog's M users", "N%" hold;
* **title**: no other candidate, no title outside the history, no comparison with itself;
* **praise**, **awards**, **cast**, **plot**: words of :data:`CLAIM_WORDS` only when the item's
  own catalog text has them.

What it does not catch: a title that is in neither the catalog nor quotes, and facts phrased
without those words. Titles are found by the catalog's forgiving title key
(:func:`normalize_title`): any run of up to eight words whose key is a catalog title, starting
with a capital letter; a one-word title also has to be 4+ letters and not open a sentence.

:func:`template_reason` writes a reason from the evidence alone; the tests check that it passes.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

from pydantic import BaseModel

from mediarec.catalog.model import Catalog, Item
from mediarec.catalog.titles import normalize_title
from mediarec.rank.evidence import MIN_CO_LIKED, Evidence
from mediarec.rank.request import find_people, item_people, vocabulary

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
# "from the 2010s, as you asked": the era said as part of what the request asked for
_ERA_AS_ASKED_RE = re.compile(_FROM_ERA_RE.pattern + r",? (?:just )?(?:as|like) you (?:asked|wanted|requested)")
EMPTY = "empty or too short"
ERA_NOT_ASKED = "says the era was asked for; the request asked for none"
#: What an LLM backend's caller passes for an answer cut off at its token limit mid-sentence.
UNFINISHED = "(unfinished)"
TOO_LONG = "unfinished: longer than the word limit"
SELF_LIKE = "compares the item with itself"
NO_NOUN = "says what the item is with an era alone"
NO_GENRE = "says it is a movie, album or track without its genre"
TITLE_AS_GENRE = "says the item is a kind of another title"
_DECADE = r"(?:early |late |mid-?)?(?:1[89]|20)?\d0s"  # "1980s", "80s", "early 90s"
_KIND_NOUN = r"(?:movie|film|series|show|track|song|album|artist|band|video)s?"
# "is a 1980s": an era where the noun should be (NO_NOUN)
_BARE_DECADE_RE = re.compile(_DECADE)
# "is a movie", "is an album", "is a 1980s film": the kind alone, where the form asks for the genre
_BARE_KIND_RE = re.compile(rf"(?:{_DECADE}\s+)?{_KIND_NOUN}")
NOT_ITS_GENRE = "calls the item a genre it does not have"
# "is a dark sci-fi horror movie": the words between "is a" and the kind word describe the item
_IS_A_RE = re.compile(rf"\bis an?\s+([^.;:!?]{{0,80}}?)\s*\b{_KIND_NOUN}\b")
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
    start: int = 0
    end: int = 0


class Claim(BaseModel):
    """One thing a reason says, and whether the catalog and the user's liked history bear it out."""

    kind: str  # one of CLAIM_KINDS
    text: str
    true: bool
    why: str = ""


#: What a reason can claim (``eval --explanations`` counts claims by these kinds).
CLAIM_KINDS = ("subject", "genre", "era", "kind", "like", "count", "liked", "disliked", "co-liked", "request",
               "popularity", "title", "praise", "awards", "cast", "plot", "people")


class ReasonCheck(BaseModel):
    """The checker's verdict on one reason, with what it found."""

    passed: bool
    problems: list[str] = []
    cited: list[str] = []
    foreign_titles: list[str] = []  # titles named that are neither the item nor in the history
    other_candidates: list[str] = []  # of which: other candidates of the list
    claims: list[Claim] = []  # every claim found, true or not
    trimmed: bool = False  # an LLM reason that passed once its last clause (a false claim) was cut

    @property
    def false_claims(self) -> list[Claim]:
        return [c for c in self.claims if not c.true]


#: Kind words a reason may call an item, by catalog kind.
KIND_WORDS: dict[str, tuple[str, ...]] = {
    "movie": ("movie", "movies", "film", "films", "feature"),
    "series": ("series", "show", "shows", "tv show", "tv series", "sitcom", "miniseries"),
    "track": ("track", "tracks", "song", "songs", "single"),
    "album": ("album", "albums", "record", "lp"),
    "artist": ("artist", "artists", "band", "bands", "musician", "singer", "group"),
    "video": ("video", "videos"),
}
_KIND_OF_WORD = {w: k for k, ws in KIND_WORDS.items() for w in ws}
_KIND_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _KIND_OF_WORD), key=len, reverse=True)) + r")\b", re.I)
# "X is a dark sci-fi horror movie", "X is a horror drama": what follows "is a" up to a clause break
_IS_PHRASE_RE = re.compile(r"\b(?:is|was|are)\s+(?:an?|another|also an?)\s+([^.;:!?]{0,80}?)"
                           r"(?=,?\s+(?:from|like|with|that|which|about|for|by|in|where|and you|you|liked|just)\b"
                           r"|,\s+(?:an?|the|it|its|one)\b|[.;:!?]|$)", re.I)
_IT_IS_RE = re.compile(r"\b(?:it|this one) is\s+(?!an?\b|not\b|from\b|liked\b|one\b|also\b)([^.;:!?,]{0,60}?)"
                       r"(?=\s+(?:from|like|with|that|which|and)\b|[.;:!?,]|$)", re.I)
_SUBJECT_RE = re.compile(r"^(.{1,200}?)\s+(?:is|was|are|has been|stays|remains)\b")
_PRONOUNS = {"it", "this", "this one", "this film", "this movie", "this series", "this show", "this album",
             "this track", "this song", "this artist", "that", "that one"}
_COMPARE_RE = re.compile(r"\b(?:like|similar to|such as|as with|in the spirit of|just like)\s+(?:the\s+)?[\"“'‘]?$", re.I)
_AND_RE = re.compile(r"^\s*(?:,|and|or|, and|, or)\s*[\"“'‘]?$", re.I)
_UNLIKE_RE = re.compile(r"\bunlike\s+[\"“'‘]?$", re.I)
_COLIKED = (r"\b(?:people|users|viewers|listeners|fans|others|those)\s+who\s+(?:also\s+)?"
            r"(?:liked|watched|enjoyed|loved|played|listened to|rated)\s+[\"“'‘]?|\bfans of\s+[\"“'‘]?")
_COLIKED_RE = re.compile(f"(?:{_COLIKED})$", re.I)  # the cue just before a title
# "people who liked <Y>" names a title: what follows the cue must be one the checker recognises
_COLIKED_CUE_RE = re.compile(_COLIKED, re.I)
_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
            "ten": 10, "eleven": 11, "twelve": 12}
_COUNT_RE = re.compile(r"\b(\d+|" + "|".join(_NUMBERS) + r"|an?)\s+(?:other\s+|more\s+)?(items?|films?|movies?|titles?|"
                       r"series|shows?|tracks?|songs?|albums?|artists?|things?)\s+(?:that\s+)?you(?:'ve|\s+have)?\s+"
                       r"(?:liked|loved|enjoyed|rated highly|like)\b", re.I)
_LIKED_RE = re.compile(r"\byour (?:history|taste|favou?rites?|likes)\b|\byou(?:'ve|\s+have)?\s+(?:liked|loved|enjoyed)\b"
                       r"|\bbecause you like\b", re.I)
_DISLIKED_AFTER_RE = re.compile(r"^[\"”'’]?\s*(?:\(\d{4}\))?,?\s*(?:which|that)\s+you\s+(?:disliked|did not like|didn't like)", re.I)
_LIKED_AFTER_RE = re.compile(r"^[\"”'’]?\s*(?:\(\d{4}\))?,?\s*(?:which|that)\s+you\s+(?:liked|loved|enjoyed)", re.I)
_POP_PCT_RE = re.compile(r"\b(\d{1,3})\s?%")
_POP_OF_RE = re.compile(r"\b(\d+) of (?:the catalog's |all |the )?(\d+) (?:users|people|listeners|viewers)\b", re.I)
_NOT_GENRE_RE = re.compile(r"\bit is not\s+([^.;:!?]{1,60})", re.I)
_SENTENCE_END = re.compile(r"[.!?;]\s")


def _key(title: str) -> str:
    return normalize_title(title)[0]


class ReasonChecker:
    """Checks reasons against one catalog (its titles, genres, kinds, years and who liked what)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.genres = {g.lower() for it in catalog.items.values() for g in it.genres}
        # Only a real genre list (not free user tags) can say a genre word is wrong.
        self.claimable_genres = self.genres - PLAIN_WORD_GENRES if len(self.genres) <= 80 else set()
        # After "is a", every genre of such a list is a claim ("a family series", "a war film").
        self.phrase_genres = self.genres if len(self.genres) <= 80 else set()

    def users_of(self, item_id: str) -> frozenset[str]:
        """Users who liked ``item_id`` (:meth:`Catalog.liked_by`)."""
        return self.catalog.liked_by(item_id)

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
                found = (n, TitleHit(text=span, ids=index[key], start=words[i].start(), end=words[i + n - 1].end()))
                break
            if found:
                hits.append(found[1])
                i += found[0]
            else:
                i += 1
        return hits

    # -- the claims -------------------------------------------------------------------------
    def _genres_in(self, text_low: str, vocab: set[str]) -> list[str]:
        """Genres of ``vocab`` named in ``text_low``, a longer name winning over one inside it
        ("hard rock" is not also "rock")."""
        found = [g for g in sorted(vocab, key=len, reverse=True) if len(g) >= 3
                 and any(_has_phrase(text_low, f) for f in genre_forms(g))]
        return [g for g in found if not any(g != h and _has_phrase(h, g) for h in found)]

    def _phrase_claims(self, clause_low: str) -> tuple[list[str], list[str]]:
        """(genres, kinds) a clause says its subject is: the words after "is a" ("a horror drama",
        "a family series") and after "it is" ("it is sci-fi")."""
        said = " ".join(m.group(1) for m in _IS_PHRASE_RE.finditer(clause_low))
        said_it = " ".join(m.group(1) for m in _IT_IS_RE.finditer(clause_low))
        genres = self._genres_in(said, self.phrase_genres) + self._genres_in(said_it, self.phrase_genres)
        kinds = [_KIND_OF_WORD[m.group(1).lower()] for m in _KIND_RE.finditer(said)
                 if not any(_has_phrase(g, m.group(1).lower()) for g in self._genres_in(said, self.phrase_genres))]
        return list(dict.fromkeys(genres)), list(dict.fromkeys(kinds))

    @staticmethod
    def _era_ok(claim: str, year: int | None) -> bool:
        """Whether ``year`` is in the era an "from the …" claim gives ("1990s", "90s", "nineties", "1997")."""
        if not year:
            return False
        return claim in {f.lower() for f in _era_forms(f"{year // 10 * 10}s")} | {str(year)}

    def _unlike_claimed(self, y: Item, item: Item, genres: list[str], kinds: list[str], eras: list[str]) -> str:
        """Why liked item ``y`` does not share what a "…, like Y" clause claims ("" when it does)."""
        y_genres = {g.lower() for g in y.genres}
        missing = [g for g in genres if g not in y_genres]
        why = []
        if missing:
            why.append(f"{y.title} is not {', '.join(missing)}")
        if any(not self._era_ok(e, y.year) for e in eras):
            why.append(f"{y.title} is not from the {', '.join(eras)}")
        if kinds and y.kind not in kinds:
            why.append(f"{y.title} is not a {kinds[0]}")
        if not genres and not eras and not ({g.lower() for g in item.genres} & y_genres):
            why.append(f"{y.title} shares no genre with {item.title}")
        return "; ".join(why)

    def check(self, reason: str | None, item: Item, evidence: Evidence, history: Sequence[Item],
              others: Iterable[Item] = ()) -> ReasonCheck:
        """Whether ``reason`` may be shown for ``item``: ``history`` is the user's liked items
        (disliked ones are in ``evidence.disliked``); see the module docstring for the rules."""
        text = " ".join((reason or "").split())
        if text == UNFINISHED:
            return ReasonCheck(passed=False, problems=[TOO_LONG])
        if len(_WORD_RE.findall(text)) < 3:
            return ReasonCheck(passed=False, problems=[EMPTY])
        liked = {h.id: h for h in history if h.id != item.id}
        disliked = {h.id: self.catalog.items[h.id] for h in evidence.disliked if h.id in self.catalog.items}
        ref = self.catalog.items.get(evidence.reference.id) if evidence.reference is not None else None
        reference = {ref.id: ref} if ref is not None and ref.id != item.id else {}  # "like Kid A" in the request
        allowed = {item.id} | set(liked) | set(disliked) | set(reference)
        allowed_keys = {_key(it.title) for it in [item, *liked.values(), *disliked.values(), *reference.values()]}
        other_ids = {o.id: o for o in others if o.id != item.id}
        problems: list[str] = []
        claims: list[Claim] = []
        foreign: list[str] = []
        wrong: list[str] = []

        def claim(kind: str, said: str, true: bool, why: str = "", problem: str | None = None) -> None:
            claims.append(Claim(kind=kind, text=said, true=true, why=why))
            if not true:
                problems.append(problem or f"false claim ({kind}): {why or said}")

        masked = text
        for it in sorted([item, *liked.values(), *disliked.values(), *reference.values()], key=lambda it: -len(it.label)):
            masked = masked.replace(_one_line(it.label), " ").replace(_one_line(it.title), " ")
        for g in evidence.shared_genres + evidence.shared_tags:  # catalog words, whatever they hold
            masked = re.sub(re.escape(_one_line(g)), " ", masked, flags=re.I) if len(g) > 2 else masked
        if _ECHO_RE.search(masked):  # a title may hold anything; the rest of the reason may not
            return ReasonCheck(passed=False, problems=[ECHO])
        hits = self.titles_in(text)
        # the text with every title blanked out (same length: positions stay), for claim words
        blank = list(text)
        for h in hits:
            blank[h.start:h.end] = "§" * (h.end - h.start)
        blanked = "".join(blank)
        blanked_low = blanked.lower()

        def clause_of(pos: int) -> tuple[int, str]:
            starts = [m.end() for m in _SENTENCE_END.finditer(blanked[:pos])]
            s0 = starts[-1] if starts else 0
            return s0, blanked_low[s0:pos]

        # 1. the subject is exactly the item
        first = hits[0] if hits else None
        end = _SENTENCE_END.search(blanked)
        subject = _SUBJECT_RE.match(blanked[: end.start() if end else len(blanked)])
        if subject:
            phrase = text[: subject.end(1)].rsplit(", ", 1)[-1].strip(" \"“”'")
            first_word = item.title.split()[0] if item.title.split() else ""
            named = "§" in blanked[: subject.end(1)] or _key(phrase) == _key(item.title) or \
                (len(first_word) > 1 and phrase.split()[0] == first_word)  # a title ("Kid An"), not "Its description"
            if named and phrase and phrase[0].isupper() and phrase.lower() not in _PRONOUNS and len(phrase.split()) <= 16:
                ok = _key(phrase) in {_key(item.title), _key(item.label)} and bool(_key(phrase))
                claim("subject", phrase, ok, "" if ok else f"the sentence is about {phrase!r}, not {item.label}")
        elif first is not None and first.start == 0 and item.id not in first.ids \
                and _key(first.text).startswith(_key(item.title)):  # the prefilled title continued
            claim("subject", first.text, False, f"the sentence starts with {first.text!r}, not {item.label}")
        # 2. titles: the item, a liked or disliked item of the history; each comparison true
        compared: list[TitleHit] = []
        for n, h in enumerate(hits):
            before = text[max(0, h.start - 40): h.start]
            ids = set(h.ids)
            is_subject = n == 0 and h.start == 0
            if allowed & ids:
                pass
            elif ids & set(other_ids):
                wrong.append(h.text)
                continue
            else:
                foreign.append(h.text)
                continue
            after = text[h.end: h.end + 40]
            if _DISLIKED_AFTER_RE.match(after) or _UNLIKE_RE.search(before):
                claim("disliked", h.text, bool(ids & set(disliked)),
                      "" if ids & set(disliked) else f"{h.text} is not an item you disliked")
                continue
            compare = _COMPARE_RE.search(before) or (compared and compared[-1].end <= h.start
                                                     and _AND_RE.match(text[compared[-1].end: h.start]))
            if item.id in ids and not (ids & set(liked)):
                if _COLIKED_RE.search(before) and not is_subject:  # "liked by people who liked <itself>"
                    claim("co-liked", h.text, False, problem=SELF_LIKE)
                elif compare and not is_subject:
                    claim("like", h.text, False, problem=SELF_LIKE)
                continue
            if _COLIKED_RE.search(before):
                ys = ids & set(liked)
                both = max((len(self.users_of(y) & self.users_of(item.id)) for y in ys), default=0)
                ok = both >= MIN_CO_LIKED
                claim("co-liked", h.text, ok, "" if ok else
                      (f"{h.text} is not an item you liked" if not ys else
                       f"{'no user' if not both else f'only {both} user'} liked both {h.text} and {item.title}"))
                continue
            if not compare:
                if ids & set(disliked) and not ids & set(liked):
                    claim("liked", h.text, False, f"{h.text} is an item you disliked")
                elif not is_subject:
                    claims.append(Claim(kind="liked", text=h.text, true=True))
                continue
            compared.append(h)
            ys = [liked[i] for i in h.ids if i in liked]  # "The Thing": 1982 or 2011, whichever is liked
            if not ys and ids & set(reference):  # the request's reference: it shares what is claimed, liked or not
                _, clause = clause_of(h.start)
                genres, kinds = self._phrase_claims(clause)
                genres += [g for g in self._genres_in(clause, self.claimable_genres) if g not in genres]
                eras = [e.group(1) for e in _FROM_ERA_RE.finditer(clause)]
                why = self._unlike_claimed(ref, item, genres, kinds, eras)
                claim("like-request", h.text, not why, why, problem=f"false comparison: {why}" if why else None)
                if _LIKED_AFTER_RE.match(after):
                    claim("liked", h.text, False, f"{h.text} is the title you named, not an item you liked")
                continue
            if not ys:
                claim("like", h.text, False, f"{h.text} is not an item you liked")
                continue
            _, clause = clause_of(h.start)
            genres, kinds = self._phrase_claims(clause)
            genres += [g for g in self._genres_in(clause, self.claimable_genres) if g not in genres]
            eras = [e.group(1) for e in _FROM_ERA_RE.finditer(clause)]
            whys = [self._unlike_claimed(y, item, genres, kinds, eras) for y in ys]
            why = "" if "" in whys else whys[0]
            claim("like", h.text, not why, why, problem=f"false comparison: {why}" if why else None)
        own_title = _one_line(item.title)
        longer = text  # "Batman …, like Batman Returns" names a history title, not the item
        for h in sorted(liked.values(), key=lambda h: -len(h.title)):
            if own_title.lower() in h.title.lower() and h.title.lower() != own_title.lower():
                longer = re.sub(re.escape(_one_line(h.title)), " ", longer, flags=re.I)
        if len(own_title) >= 4 and SELF_LIKE not in problems and \
                re.search(r"\b(?:like|and|or)\s+[\"“'‘]?" + re.escape(own_title) + r"\b", longer, re.I):
            claim("like", own_title, False, problem=SELF_LIKE)
        # "liked by people who liked Star Trek III: The Undiscovered Country" (seen on ML-100k: the
        # model crossed the item's title with the liked one's): no known title where the cue points
        starts = {h.start for h in hits}
        for cue in _COLIKED_CUE_RE.finditer(text):
            if cue.end() not in starts and not re.match(r"(?:it|this|them|both|the same)\b", text[cue.end():], re.I):
                named = re.split(r"[.;!?]\s|[.;!?]$|,\s", text[cue.end():], maxsplit=1)[0].strip(" \"“”'‘’")
                if named and named[0].isupper():
                    foreign.append(named)
        if wrong:
            claim("title", "; ".join(wrong), False, problem="names another candidate: " + "; ".join(wrong))
        if foreign:
            claim("title", "; ".join(foreign), False, problem="names a title outside the history: " + "; ".join(foreign))
        for q in _QUOTED_RE.finditer(masked):
            qt = q.group(1).strip()
            key = _key(qt)
            if qt[:1].isupper() and key and key not in allowed_keys and qt.lower() not in self.genres \
                    and not any(qt in f or f in qt for f in foreign + wrong):
                foreign.append(qt)
                claim("title", qt, False, problem="names a title outside the history: " + qt)
        # 3. what the item is: genres and kind after "is a", its era
        own_genres = {g.lower() for g in item.genres}
        liked_genres = {g.lower() for h in liked.values() for g in h.genres}
        said_genres, said_kinds = self._phrase_claims(blanked_low)
        is_phrases = list(_IS_PHRASE_RE.finditer(blanked_low))  # what follows each "is a"
        if any(_BARE_DECADE_RE.fullmatch(m.group(1).strip()) for m in is_phrases):
            problems.append(NO_NOUN)  # "The Shining is a 1980s from the 1980s": not a sentence
        # "Raiders of the Lost Ark is from the 1980s, liked by ...": the first sentence's subject
        era_only = subject is not None and re.match(r"\s+from\b", blanked_low[subject.end():]) is not None and (
            "§" in subject.group(1)  # a title found there, or the item's own ("WALL-E" opens the sentence)
            or _key(text[: subject.end(1)].strip(" \"“”'")) in {_key(item.title), _key(item.label)})
        if item.genres and not said_genres and (era_only or any(_BARE_KIND_RE.fullmatch(m.group(1).strip())
                                                                for m in is_phrases)):
            # "Persepolis is a movie from the 2000s, liked by ...": true, but it tells less than a
            # genre label would (12 of 300 LLM reasons, stop 37); asked again, told which genre to say
            own = [g for g in evidence.shared_genres if g.lower() in own_genres] or list(item.genres)
            problems.append(f"{NO_GENRE}: say that it is {_one_line(own[0]).lower()}")
        for m in is_phrases:
            if "§" in m.group(1):  # "Perfect Blue is a Spider-Man: Into the Spider-Verse animation" (stop 38)
                said = text[m.start(1):m.end(1)]
                claim("genre", said, False, problem=f"{TITLE_AS_GENRE}: {said}")
        for g in said_genres:
            claim("genre", g, g in own_genres, problem=None if g in own_genres else f"{NOT_ITS_GENRE}: {g}")
        for k in said_kinds:
            claim("kind", k, k == item.kind, "" if k == item.kind else f"{item.title} is a {item.kind}, not a {k}")
        for g in self._genres_in(blanked_low, self.claimable_genres):
            if g in said_genres:
                continue
            ok = g in own_genres or g in liked_genres or any(g in {x.lower() for x in d.genres} for d in disliked.values())
            claim("genre", g, ok, problem=None if ok else f"genre neither the item's nor the history's: {g}")
        for e in _FROM_ERA_RE.finditer(blanked_low):
            _, clause = clause_of(e.start())
            if re.search(r"\byou(?:'ve| have)? (?:liked|loved|enjoyed)\b|\bitems?\b", clause) and \
                    not re.search(r"\b(?:is|comes|was)\b", clause):
                continue  # "items you liked from the 1990s": about the history, counted below
            ok = self._era_ok(e.group(1), item.year)
            claim("era", e.group(0), ok, problem=None if ok else f"wrong era for the item: {e.group(0)}")
        # 4. counts of liked items
        for c in _COUNT_RE.finditer(blanked_low):
            word = c.group(1).lower()
            n_said = int(word) if word.isdigit() else _NUMBERS.get(word, 1)
            _, clause = clause_of(c.start())
            genres, _ = self._phrase_claims(clause)
            genres += [g for g in self._genres_in(clause, self.claimable_genres) if g not in genres]
            eras = [e.group(1) for e in _FROM_ERA_RE.finditer(clause)]
            kind = _KIND_OF_WORD.get(c.group(2).lower().rstrip("s") if c.group(2).lower() not in _KIND_OF_WORD
                                     else c.group(2).lower())
            n_true = sum(1 for h in liked.values()
                         if all(g in {x.lower() for x in h.genres} for g in genres)
                         and all(self._era_ok(e, h.year) for e in eras) and (kind is None or h.kind == kind))
            ok = n_true >= 1 if word in ("a", "an") else n_true == n_said
            claim("count", c.group(0), ok, f"you liked {n_true} such items, not {n_said}")
        # 5. "you liked" with nothing liked; the request; popularity; the disliked item's genres
        for lk in _LIKED_RE.finditer(blanked_low):
            claim("liked", lk.group(0), bool(liked), "you have no liked items")
        if any(w in blanked_low for w in _REQUEST_WORDS):
            ok = "request" in evidence.elements()
            claim("request", "request", ok, "it does not match the request")
        for e in _ERA_AS_ASKED_RE.finditer(blanked_low):  # "from the 2010s, as you asked": was a decade asked?
            ok = bool(evidence.asked_era) and self._era_ok(e.group(1), item.year)
            claim("request", e.group(0), ok, ERA_NOT_ASKED)
        users, n_users = len(self.users_of(item.id)), len(self.catalog.by_user)
        for p in _POP_OF_RE.finditer(blanked):
            ok = int(p.group(1)) == users and int(p.group(2)) == n_users
            claim("popularity", p.group(0), ok, f"{users} of {n_users} users liked it")
        for p in _POP_PCT_RE.finditer(blanked):
            shares = [x for x in (evidence.popularity, users / max(n_users, 1)) if x is not None]
            ok = any(round(100 * x) == int(p.group(1)) for x in shares)
            claim("popularity", p.group(0), ok, "no such share of users liked it")
        for ng in _NOT_GENRE_RE.finditer(blanked_low):
            for g in self._genres_in(ng.group(1), self.phrase_genres):
                claim("genre", "not " + g, g not in own_genres, f"{item.title} is {g}")
        # 6. praise, awards, cast, plot: only what the item's own text says
        masked_low = masked.lower()
        own = item.text(4000).lower()
        for kind, rx in _CLAIM_RE.items():
            found = {m.group(1).lower() for m in rx.finditer(masked_low)}
            words = sorted(w for w in found if not (_has_phrase(own, w) or _has_phrase(own, w.split("-")[0])))
            for w in words:
                claims.append(Claim(kind=kind, text=w, true=False, why="not in the item's catalog text"))
            if words:
                problems.append(f"unsupported claim ({kind}): " + ", ".join(words))
        # 6b. a person the catalogue knows (director, artist, creator) is one of the item's, or of a
        # liked, disliked or named item's: "a comedy by Wes Anderson" is checked like a genre
        people = vocabulary(self.catalog).people
        if people:
            made = {p for it in [item, *liked.values(), *disliked.values(), *reference.values()] for p in item_people(it)}
            for start, end, key in find_people(masked, people, masked):
                who = people[key]
                claim("people", masked[start:end], any(w.lower() in made for w in who),
                      f"{' or '.join(who)} made neither {item.title} nor an item of the history")
        # 7. it cites something the models found
        low = text.lower()
        cited = [h.title for h in evidence.history_titles()
                 if h.id in {i for x in hits for i in x.ids} or _has_phrase(low, _key(h.title))
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
        cited += [c.kind for c in claims if c.true and c.kind in ("like", "co-liked", "count", "popularity", "disliked")]
        if not cited:
            problems.append("cites none of the evidence")
        return ReasonCheck(passed=not problems, problems=list(dict.fromkeys(problems)), cited=list(dict.fromkeys(cited)),
                           foreign_titles=foreign + wrong, other_candidates=wrong, claims=claims)


def _list(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _items(n: int) -> str:
    return "an item you liked" if n == 1 else f"{n} items you liked"


def template_reason(evidence: Evidence, item: Item | None = None) -> str:
    """A reason written from the evidence alone, true by construction: at most two short
    sentences, from the strongest true fact down (the co-liked title that drives the score, the
    request, a liked item sharing its genres, how many distinct liked items share a genre or the
    era). A user with no liked items gets what the reason rests on instead: the request, an item
    they disliked that it is unlike, or how many users liked it; never "your history"."""
    out: list[str] = []
    if evidence.plays:  # a replay (include-seen): say so first, it is the strongest true fact
        n = int(round(evidence.plays))
        out.append(("You played it once before." if n == 1 else f"You played it {n} times before.")
                   if evidence.replay_event == "play"
                   else "You have had it before, and liked it.")
    if evidence.cowatched is not None:
        out.append(f"People who liked {_one_line(evidence.cowatched.label)} also liked it.")
    named = [_one_line(g).lower() for g in evidence.reference_genres if g not in evidence.asked][:2]
    if evidence.reference is not None and named:  # "something like Kid A": what it shares with Kid A first
        out.insert(1 if evidence.plays else 0,
                   f"It is {_list(named)}, like {_one_line(evidence.reference.label)}, which you named.")
    elif evidence.reference is not None and evidence.reference_near:  # one step away: say both genres
        theirs = _list([_one_line(g).lower() for g in evidence.reference.genres[:2]])
        out.insert(1 if evidence.plays else 0,
                   f"It is {_list([_one_line(g).lower() for g in evidence.reference_near[:2]])}, close to the "
                   f"{theirs} of {_one_line(evidence.reference.label)}, which you named.")
    asked = {g.lower() for g in evidence.asked[:2]}
    if evidence.asked or evidence.asked_era or evidence.asked_people:
        era = f" from the {evidence.asked_era}" if evidence.asked_era else ""
        by = f" by {_list([_one_line(p) for p in evidence.asked_people[:2]])}" if evidence.asked_people else ""
        what = _list([_one_line(g).lower() for g in evidence.asked[:2]]) if evidence.asked else ""
        out.append(f"It is {what}{era}{by}, as you asked." if what else f"It is{era}{by}, as you asked.")
    elif "request" in evidence.elements() and not named:
        out.append("It matches your request.")
    # the comparison with a liked item says what the sentences before did not (the asked and named genres, era)
    before = asked | (set(named) if evidence.reference is not None else set())
    genres = [_one_line(g).lower() for g in evidence.like_genres[:2] if g.lower() not in before]
    era = f" from the {decade_of(evidence.like.year)}" if evidence.like is not None and evidence.like_era \
        and evidence.like.year and not evidence.asked_era else ""
    era_said = False
    if evidence.like is not None and evidence.like_genres and (genres or era) and (
            evidence.cowatched is None or evidence.like.id != evidence.cowatched.id):
        era_said = bool(era)
        out.append(f"It is {_list(genres) if genres else ''}{era if genres else era.lstrip()}, "
                   f"like {_one_line(evidence.like.label)}, which you liked.")
    said = ({g.lower() for g in evidence.like_genres[:2]} if evidence.like is not None and len(out) < 3 else set()) | before
    counts = {g: n for g, n in evidence.genre_counts.items() if n > 1 and g.lower() not in said}
    if counts:
        g = max(counts, key=lambda g: counts[g])
        out.append(f"It is {_one_line(g).lower()}, like {_items(counts[g])}.")
    if evidence.era and evidence.era_count >= 1 and evidence.era != evidence.asked_era and not era_said:  # said once
        out.append(f"It is from the {evidence.era}, like {_items(evidence.era_count)}.")
    if evidence.no_liked_history:
        unlike = _unlike(evidence, item)
        if unlike:
            out.append(unlike)
        if evidence.users and evidence.catalog_users:
            out.append(f"{evidence.users} of the catalog's {evidence.catalog_users} users liked it.")
        if not out:
            out.append("You have no liked items yet, and no user of this catalog liked it either.")
    if not out and evidence.shared_genres:
        out.append(f"It is {_one_line(evidence.shared_genres[0]).lower()}, like {_items(max(evidence.genre_counts.get(evidence.shared_genres[0], 1), 1))}.")
    if not out and evidence.similar:  # a text neighbour (a collaborative link is no description)
        h = evidence.similar[0]
        out.append(f"Its description is close to that of {_one_line(h.label)}, which you liked.")
    if not out:
        out.append(f"{evidence.users} of the catalog's {evidence.catalog_users} users liked it." if evidence.users
                   else "It is one of the catalog's items you have not seen.")
    return " ".join(out[:2])


def decade_of(year: int | None) -> str:
    return f"{int(year) // 10 * 10}s" if year else ""


def _unlike(evidence: Evidence, item: Item | None) -> str | None:
    """"Unlike X, which you disliked, it is not horror.": a disliked item it shares no genre with."""
    if item is None:
        return None
    own = {g.lower() for g in item.genres}
    for d in evidence.disliked:
        genres = [g for g in d.genres if g.lower() not in own]
        if genres and not ({g.lower() for g in d.genres} & own):
            return f"Unlike {_one_line(d.label)}, which you disliked, it is not {_one_line(genres[0]).lower()}."
    return None
