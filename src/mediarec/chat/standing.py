"""A chat session's standing request: constraints that persist across turns until lifted.

Each request message is read by the same parser as ``mediarec recommend`` (:mod:`mediarec.rank.request`)
and merged into what the session already holds, so "no horror", then "from the 90s", then "an album"
mean all three at once. The latest word on a field wins ("from the 80s" after "from the 90s"); an
exclusion adds to the others and overrides an earlier wish for the same genre (and the other way
round). What the request is *about* (the reference item, tags, free text) is replaced by a message that
names a new subject and kept by one that only adds a filter ("from the 90s" still means "like Alien").
"""

from __future__ import annotations

from mediarec.catalog.model import Catalog
from mediarec.rank.request import KIND_WORDS, Constraints, keep_character, parse_request

_YEAR_WORDS = {"year", "years", "decade", "decades", "era", "date", "dates", "when"}
_KIND_WORDS = {"kind", "kinds", "type", "types", "format", "media"}
_REFERENCE_WORDS = {"like", "reference", "ref", "similar", "similar to"}
_PEOPLE_WORDS = {"people", "person", "director", "directors", "artist", "artists", "by", "who"}
_SUBJECT_WORDS = {"text", "subject", "topic", "about", "tags", "soft", "request"}
_ALL_WORDS = {"", "all", "everything", "constraints", "filters"}


def has_subject(c: Constraints) -> bool:
    """Whether a request says what it is about (not only what to filter)."""
    return bool(c.reference or c.tags or c.soft)


def merge(standing: Constraints, turn: Constraints, catalog: Catalog | None = None) -> Constraints:
    """The standing constraints with one turn's parsed request applied (the turn wins on conflicts).

    A relative turn ("older", "darker", "something else") is no new subject: it keeps the standing
    reference ("like Alien") and adds what it became. With ``catalog`` a standing "like X" that
    gains a "but Y" ranks X's character first (:func:`mediarec.rank.request.keep_character`)."""
    m = standing.model_copy(deep=True)
    if turn.relative_tags or turn.relative_exclude_genres:  # a new mood ("happier" after "sadder") replaces
        said = {g.lower() for g in turn.exclude_genres}      # the old one's exclusions, never what was said
        old_mood = {g.lower() for g in standing.relative_exclude_genres} - said
        m.exclude_genres = [g for g in m.exclude_genres if g.lower() not in old_mood]
        explicit = {g.lower() for g in m.exclude_genres}
        m.relative_exclude_genres = [g for g in turn.relative_exclude_genres if g.lower() not in explicit]
    if turn.genres:
        m.genres = list(turn.genres)
    m.exclude_genres = _merged_exclusions(m.exclude_genres, turn.exclude_genres, turn.genres)
    m.genres = [g for g in m.genres if g.lower() not in {x.lower() for x in turn.exclude_genres}]
    if turn.people:  # "by Kubrick" replaces "by Nolan"; "nothing by Nolan" adds to what is left out
        m.people = list(turn.people)
    m.exclude_people = _merged_exclusions(m.exclude_people, turn.exclude_people, turn.people)
    m.people = [p for p in m.people if p.lower() not in {x.lower() for x in turn.exclude_people}]
    if turn.year_min is not None or turn.year_max is not None:
        m.year_min, m.year_max = turn.year_min, turn.year_max
    if turn.kinds:
        m.kinds, m.kind_of_reference = list(turn.kinds), turn.kind_of_reference
    elif has_subject(turn) and m.kind_of_reference:  # the old "like X"'s kind goes with it
        m.kinds, m.kind_of_reference = [], False
    if has_subject(turn):
        m.people = list(turn.people)  # "like Radiohead" after "by Kubrick": Kubrick was the old subject
        m.reference, m.reference_title = turn.reference, turn.reference_title
        m.more_references, m.more_reference_titles = list(turn.more_references), list(turn.more_reference_titles)
        m.tags, m.soft = list(turn.tags), turn.soft
        m.request = turn.request
    elif not m.request:
        m.request = turn.request
    m.exclude_tags = _merged_exclusions(m.exclude_tags, turn.exclude_tags, turn.tags)
    m.tags = [t for t in m.tags if t.lower() not in {x.lower() for x in turn.exclude_tags}]
    m.exclude_kinds = [k for k in m.exclude_kinds if k not in turn.kinds] + \
        [k for k in turn.exclude_kinds if k not in m.exclude_kinds]
    m.kinds = [k for k in m.kinds if k not in turn.exclude_kinds]
    m.exclude_items = list(dict.fromkeys(m.exclude_items + turn.exclude_items))
    m.exclude_titles = list(dict.fromkeys(m.exclude_titles + turn.exclude_titles))
    m.exclude_years = list(dict.fromkeys(m.exclude_years + turn.exclude_years))
    if turn.relative_tags:
        m.relative_tags = list(turn.relative_tags)
    m.applied = list(turn.applied)  # what this message's relative words became (shown once)
    m.relative = []
    m.unmet = list(turn.unmet)  # what this message asked for that the catalogue lacks: not kept
    m.unread = list(turn.unread)
    m.parser, m.llm_seconds = turn.parser, turn.llm_seconds
    if catalog is not None:
        keep_character(m, catalog)
    elif has_subject(turn):
        m.prefer_genres, m.near_genres = list(turn.prefer_genres), list(turn.near_genres)
    return m


def _merged_exclusions(old: list[str], new: list[str], wanted_now: list[str]) -> list[str]:
    wanted = {w.lower() for w in wanted_now}
    return list(dict.fromkeys([x for x in old if x.lower() not in wanted] + list(new)))


def lines(c: Constraints, subject: bool = True) -> list[str]:
    """The standing constraints for people, one line each (``subject``: with the tags and free text)."""
    out = []
    if c.reference_title:
        out.append("like " + " and ".join([c.reference_title, *c.more_reference_titles]))
    if c.people:
        out.append("by " + " or ".join(c.people))
    out += [f"genre {g}" for g in c.genres]
    out += [f"no {g}" for g in c.exclude_genres]
    out += [f"nothing by {p}" for p in c.exclude_people]
    out += [f"no {t} (tag)" for t in c.exclude_tags]
    out += [f"no {k}s" if not k.endswith("s") else f"no {k}" for k in c.exclude_kinds]
    out += [f"no {lo}-{hi}" for lo, hi in c.exclude_years]
    if c.exclude_titles:
        out.append("not " + ", ".join(c.exclude_titles))
    out += list(c.applied)
    if c.year_min is not None or c.year_max is not None:
        lo, hi = c.year_min, c.year_max
        out.append(f"years {lo} to {hi}" if lo is not None and hi is not None
                   else f"from {lo} on" if lo is not None else f"up to {hi}")
    if c.kinds:
        out.append("kind " + " or ".join(c.kinds)
                   + (" (its kind)" if c.kind_of_reference else ""))
    if c.tags and subject:
        out.append("about " + ", ".join(c.tags))
    if c.soft and subject:
        out.append(f"free text {c.soft!r}")
    return out


def lift(c: Constraints, what: str, catalog: Catalog) -> tuple[Constraints, list[str]]:
    """(the constraints without ``what``, the lines lifted); ``what`` empty or "all" lifts everything.

    ``what`` names a genre or tag ("horror", "no horror"), the years ("years", "90s"), the kind
    ("kind", "album"), the reference ("like", its title) or the free text ("text").
    """
    before = lines(c)
    key = " ".join(what.lower().split()).strip(" .!?'\"")
    if key in _ALL_WORDS:
        return Constraints(), before
    m = c.model_copy(deep=True)
    read = parse_request(key, catalog)
    if key in _YEAR_WORDS or read.year_min is not None or read.year_max is not None or read.exclude_years:
        m.year_min = m.year_max = None
        m.exclude_years = []
    if key in _KIND_WORDS or key in KIND_WORDS or read.kinds or read.exclude_kinds:
        m.kinds, m.exclude_kinds = [], []
    said = parse_request(what.strip().title() if what.strip().islower() else what.strip(), catalog)  # "kubrick": a name
    if key in _PEOPLE_WORDS or said.people or said.exclude_people:  # "clear Kubrick", "clear people"
        named = {p.lower() for p in said.people + said.exclude_people}
        m.people = [] if key in _PEOPLE_WORDS else [p for p in m.people if p.lower() not in named]
        m.exclude_people = [] if key in _PEOPLE_WORDS else [p for p in m.exclude_people if p.lower() not in named]
    if read.exclude_items or read.reference or key in {"titles", "title", "items"}:
        gone = set(read.exclude_items) | ({read.reference} if read.reference else set())
        everything = key in {"titles", "title", "items"}
        m.exclude_items = [] if everything else [i for i in m.exclude_items if i not in gone]
        m.exclude_titles = [] if everything else [t for t in m.exclude_titles if t not in set(read.exclude_titles)]
    if c.reference and (key in _REFERENCE_WORDS or parse_request("like " + key, catalog).reference == c.reference):
        m.reference = m.reference_title = None
        m.more_references, m.more_reference_titles = [], []
    if key in _SUBJECT_WORDS:
        m.reference = m.reference_title = None
        m.more_references, m.more_reference_titles = [], []
        m.tags, m.soft = [], ""
    if key.startswith("no ") or key.startswith("not "):
        key = key.split(" ", 1)[1]
    genres = {g.lower() for g in read.genres + read.exclude_genres} | {key}
    tags = {t.lower() for t in read.tags + read.exclude_tags} | {key}
    m.genres = [g for g in m.genres if g.lower() not in genres]
    m.exclude_genres = [g for g in m.exclude_genres if g.lower() not in genres]
    m.tags = [t for t in m.tags if t.lower() not in tags]
    m.exclude_tags = [t for t in m.exclude_tags if t.lower() not in tags]
    if key == (c.soft or "").lower():
        m.soft = ""
    after = set(lines(m))
    return m, [ln for ln in before if ln not in after]
