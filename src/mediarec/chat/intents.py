"""Reading one chat message: what the user means, from the words alone.

:func:`parse_intent` turns a message into one small typed intent ("more like 2" is a
:class:`MoreLike`, "like 2 but shorter" a :class:`LikeShown`, anything else a :class:`Request`). It
knows nothing of the catalog or the session, so it can be tested on its own; the session decides what
an intent means against its state (whether "Heat" is a title) and falls back to a plain request when
it does not fit. What a request asks for ("no horror", "from the 90s", "an album") is read by the
request parser (:mod:`mediarec.rank.request`), which knows the catalog, not here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

_NUM_LIST = r"#?\d+(?:\s*(?:,|and|&)\s*#?\d+)*"
_MORE_RE = re.compile(rf"^(?:more|more like|more of|like|similar to|more similar to)\s+"
                      rf"(?:number\s+)?({_NUM_LIST})$")
_NOT_RE = re.compile(rf"^(?:not|no|skip|drop|exclude|remove|hide|never|not interested in)\s+"
                     rf"(?:number\s+)?({_NUM_LIST})$")
# "like 2 but shorter": a request relative to a shown item (the rest is read by the request parser)
_LIKE_SHOWN_RE = re.compile(r"^(?:(?:something|anything|one|a|an|more)\s+)?(?:(?:more\s+)?like|similar to)\s+"
                            r"(?:number\s+)?#?(\d{1,3})(?![\w#])(?!\s*(?:,|and|&)\s*#?\d)[\s,]*(?P<rest>.+)$")
# "no X": only to say so when X is no genre or tag of the catalog (the request parser reads it)
_NEGATED_RE = re.compile(r"^(?:no|no more|not|without|nothing|exclude|ban|skip|drop|hide)\s+"
                         r"(?!(?:more\s+)?like\s+(?:number\s+)?#?\d)(.+?)"  # "no more like 2" is no ban
                         r"(?:\s+(?:please|pls|thanks|anymore|any more|for now|from now on))*$")
_CONSUMED_RE = re.compile(
    r"^(?:(?:i|we)\s+)?(?:(?:have|'ve|ve|just|already|recently|also|did|once|finally)\s+)*"
    r"(?P<verb>watched|saw|seen|listened to|heard|played|finished|binged)\s+(?P<rest>.+)$")
_AND_FEEDBACK_RE = re.compile(
    r"^(?P<title>.+?)\s*(?:,|-)?\s+and\s+(?:i\s+|it\s+was\s+)?"
    r"(?P<fb>liked it|loved it|enjoyed it|liked that|loved that|great|good|didn'?t like it|did not like it|"
    r"hated it|disliked it|not for me|meh|bad)\s*$")
_NEGATIVE_WORDS = ("didn", "did not", "hated", "disliked", "not for me", "meh", "bad")
_LIKE_RE = re.compile(r"^(?:i\s+)?(?:really\s+)?(?:liked|loved|enjoyed)\s+(?P<ref>.+)$"
                      r"|^i\s+(?:really\s+)?(?:like|love|dig|adore)\s+(?P<ref2>.+)$")
_DISLIKE_RE = re.compile(r"^(?:i\s+)?(?:didn'?t|did not|don'?t|do not)\s+(?:really\s+)?(?:like|love|enjoy)\s+"
                         r"(?P<ref>.+)$|^(?:i\s+)?(?:hated|disliked|hate|dislike)\s+(?P<ref2>.+)$")
_BARE_LIKE = {"liked it", "loved it", "i liked it", "i loved it", "great", "good one", "i enjoyed it", "enjoyed it",
              "nice", "love it", "like it", "i like it", "i love it", "thumbs up", "+1"}
_BARE_DISLIKE = {"didn't like it", "didnt like it", "did not like it", "i didn't like it", "i didnt like it",
                 "i did not like it", "hated it", "i hated it", "not for me", "meh", "disliked it", "i disliked it",
                 "thumbs down", "-1", "i don't like it", "i dont like it", "don't like it", "dont like it"}
_AGAIN = {"again", "more", "refresh", "try again", "show again", "more please", "again please"}
# "something to rewatch", "an album I have heard before": replays allowed for this turn (issue 28)
_REPLAY_RE = re.compile(
    r"\b(?:re-?watch(?:ing)?|re-?listen(?:ing)?(?: to)?|watch(?:ed)? again|listen(?:ed)? (?:to )?again|"
    r"hear again|see again|play again|(?:i|i have|i've)?\s*(?:already|before)\s+(?:seen|watched|heard|played)|"
    r"(?:i have|i've)?\s*(?:seen|watched|heard|played|listened to) before|one of my (?:old )?favou?rites|"
    r"(?:an? )?old favou?rites?)\b")
_RANK_RE = re.compile(r"(?:number\s+)?#?(\d+)")
# "why 2", "why number 3?", "why is 1 there", "explain 2": the reasons for a shown item (the REPL's :why)
_WHY_RE = re.compile(r"^(?:why|explain|why did you (?:pick|choose|suggest|recommend)|why is|why was|how come)\s+"
                     r"(?:number\s+|item\s+)?#?(\d{1,3})(?:\s+(?:here|there|on the list|in the list|recommended|"
                     r"suggested|picked|chosen))?$")

#: Words that point at the item mentioned last ("I liked it").
IT_WORDS = frozenset({"it", "that", "this", "this one", "that one", "the last one", "the last"})

_VAGUE_WORDS = set("""
a an the any some something anything somethin stuff things thing me my i we us you your for to of with
what whats what's which should could would can do next now tonight today please pls recommend recommendation
recommendations suggest suggestion suggestions give show find pick choose surprise good nice great new
more another other watch listen hear play see to be like love want wanna need in mood the
film films movie movies show shows series music song songs track tracks album albums
""".split())
_WORD_RE = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Request:
    """Something to search for (also the reading of any message that is not feedback)."""

    text: str


@dataclass(frozen=True)
class Again:
    """Show the last request's list again ("again", "refresh")."""

    text: str


@dataclass(frozen=True)
class MoreLike:
    """Items of the last list, by rank, that the user likes ("more like 2", "like 1, 3")."""

    text: str
    ranks: tuple[int, ...]


@dataclass(frozen=True)
class NotShown:
    """Items of the last list, by rank, never to show again ("not 3", "skip 1 and 2")."""

    text: str
    ranks: tuple[int, ...]


@dataclass(frozen=True)
class Feedback:
    """A like or dislike of a reference: a rank, "it", or a title ("I hated Heat", "didn't like it").

    A dislike of something that is no title may be a genre ("I hate horror"); a like of something that
    is no title is a request ("I liked Alein"): the session, which knows the catalog, decides.
    """

    text: str
    ref: str
    liked: bool


@dataclass(frozen=True)
class Consumed:
    """A title the user watched, heard or played, maybe with a verdict ("I saw Heat and loved it")."""

    text: str
    title: str
    verb: str
    liked: bool | None = None


@dataclass(frozen=True)
class Why:
    """Why item N of the last list is there ("why 2", "explain 3")."""

    text: str
    rank: int


@dataclass(frozen=True)
class LikeShown:
    """A request relative to an item of the last list, by rank ("like 2 but shorter"): the item is
    the reference, ``rest`` says how to differ."""

    text: str
    rank: int
    rest: str


Intent = Union[Request, Again, MoreLike, NotShown, Feedback, Consumed, LikeShown, Why]


def clean_message(text: str) -> str:
    """The message as the parser reads it: one space between words, no closing punctuation,
    straight quotes, and "I've" as "I have"."""
    msg = " ".join(str(text).strip().split()).rstrip(" .!?")
    msg = msg.replace("\u2019", "'").replace("\u2018", "'")
    return re.sub(r"\b([Ii])'ve\b", r"\1 have", msg)


def parse_intent(text: str) -> Intent:
    """What one message means; the first reading that fits wins, a :class:`Request` when none does."""
    msg = clean_message(text)
    low = msg.lower()
    if low in _AGAIN:
        return Again(msg)
    m = _MORE_RE.match(low)
    if m:
        return MoreLike(msg, _numbers(m.group(1)))
    m = _NOT_RE.match(low)
    if m:
        return NotShown(msg, _numbers(m.group(1)))
    m = _WHY_RE.match(low)
    if m:
        return Why(msg, int(m.group(1)))
    if low in _BARE_LIKE:
        return Feedback(msg, "it", True)
    if low in _BARE_DISLIKE:
        return Feedback(msg, "it", False)
    m = _DISLIKE_RE.match(low)
    if m:
        return Feedback(msg, _original(msg, (m.group("ref") or m.group("ref2")).strip()), False)
    m = _CONSUMED_RE.match(low)
    if m:
        return _consumed(msg, _original(msg, m.group("rest")), m.group("verb"))
    m = _LIKE_RE.match(low)
    if m:
        return Feedback(msg, _original(msg, (m.group("ref") or m.group("ref2")).strip()), True)
    m = _LIKE_SHOWN_RE.match(low)
    if m and m.group("rest").strip(" ,"):
        return LikeShown(msg, int(m.group(1)), _original(msg, m.group("rest").strip(" ,")))
    return Request(msg)


def _consumed(msg: str, rest: str, verb: str) -> Consumed:
    liked: bool | None = None
    m = _AND_FEEDBACK_RE.match(rest)
    if m:
        verdict = m.group("fb").lower()
        liked = not any(w in verdict for w in _NEGATIVE_WORDS)
        rest = m.group("title")
    return Consumed(msg, rest.rstrip(" .!,"), verb, liked)


def _original(msg: str, lowered_part: str) -> str:
    """The part of the message, in its original case, that a match on the lowered message found."""
    i = msg.lower().rfind(lowered_part)
    return msg[i:i + len(lowered_part)] if i >= 0 else lowered_part


def _numbers(s: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", s))


def shown_rank(ref: str) -> int | None:
    """The rank a reference names ("2", "#2", "number 2"), or None when it names none."""
    m = _RANK_RE.fullmatch(ref.strip().lower())
    return int(m.group(1)) if m else None


def replay_request(text: str) -> tuple[bool, str]:
    """(does the message ask for something already consumed, the message without those words):
    "something to rewatch" allows replays for that answer, and "rewatch" is not left unread."""
    msg = clean_message(text)
    stripped, n = _REPLAY_RE.subn(" ", msg.lower())
    if not n:
        return False, msg
    rest = " ".join(stripped.split()).strip(" ,")
    rest = re.sub(r"\b(?:to|that|which|i|i have|have)$", "", rest).strip(" ,")
    return True, rest or "something"


def negated_term(text: str) -> str | None:
    """What a "no X" message leaves out, as typed ("no more sci-fi films" gives "more sci-fi films"),
    or None when the message is no such thing."""
    m = _NEGATED_RE.match(clean_message(text).lower())
    return m.group(1).strip() if m else None


def is_vague(request: str) -> bool:
    """A request with nothing to search for ("what next?", "surprise me", "recommend something")."""
    words = _WORD_RE.findall(request.lower())
    return not [w for w in words if w not in _VAGUE_WORDS]
