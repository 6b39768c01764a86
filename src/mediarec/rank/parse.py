"""Read what an LLM ranked, and fuse it with retrieval: pure Python, no model.

Two modes feed this module:

* explained list: the model answers ``{"ranking": [{"id": "<label>", "reason": "..."}]}``;
  :func:`parse_ranking` reads it forgivingly and says what it had to forgive, or raises
  :class:`RankingParseError` with a message fit for the repair prompt;
* single-pass scoring: the logits of the candidates' one-token labels go through :func:`softmax`.

Either score set is combined with the retrieval scores by :func:`fuse`; :func:`shuffled_orders`
and :func:`aggregate_permutations` average out the position bias over B shuffled candidate orders.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Hashable, Iterable, Iterator, Mapping, Sequence, TypeVar

from pydantic import BaseModel, Field

from mediarec.catalog.titles import normalize_title

T = TypeVar("T", bound=Hashable)

#: Answers longer than this are cut before parsing (a ranking of 52 entries is ~10 KB).
MAX_ANSWER_CHARS = 50_000
#: Longest reason kept from an answer.
MAX_REASON_CHARS = 1000


# -- answer models and schemas -------------------------------------------------------------------
class RankedEntry(BaseModel):
    id: str
    reason: str = ""


class RankingAnswer(BaseModel):
    ranking: list[RankedEntry] = Field(default_factory=list)


def _entries_schema(key: str, labels: Sequence[str], n: int, max_chars: int) -> dict[str, Any]:
    labs = list(dict.fromkeys(str(x) for x in labels))
    if not labs:
        raise ValueError("no candidate labels")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, not {n!r}")
    n = min(n, len(labs))
    return {
        "type": "object",
        "properties": {
            key: {
                "type": "array",
                "minItems": n,
                "maxItems": n,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "enum": labs},
                        "reason": {"type": "string", "maxLength": int(max_chars)},
                    },
                    "required": ["id", "reason"],
                    "additionalProperties": False,
                },
            }
        },
        "required": [key],
        "additionalProperties": False,
    }


def ranking_json_schema(labels: Sequence[str], n: int, reason_max_chars: int = 160) -> dict[str, Any]:
    """JSON schema of ``{"ranking": [{"id": <label>, "reason": <str>}]}`` with exactly n entries.

    For llama.cpp's grammar or a server's structured output. ``n`` is capped at the number of
    labels. JSON schema cannot say "each id once" for objects; :func:`parse_ranking` drops repeats.
    """
    return _entries_schema("ranking", labels, n, reason_max_chars)


def reasons_json_schema(labels: Sequence[str], n: int, max_chars: int = 160) -> dict[str, Any]:
    """Schema of the explain prompt's answer ``{"reasons": [{"id": <label>, "reason": <str>}]}``."""
    return _entries_schema("reasons", labels, n, max_chars)


class ProfileAnswer(BaseModel):
    """The profile prompt's answer."""

    themes: list[str] = Field(default_factory=list)
    moods: list[str] = Field(default_factory=list)
    genres: list[str] = Field(default_factory=list)
    eras: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    summary: str = ""


def profile_json_schema(max_items: int = 6, item_max_chars: int = 40, summary_max_chars: int = 300) -> dict[str, Any]:
    """Schema of the profile prompt's answer (lists of short phrases and a summary)."""
    lst = {"type": "array", "maxItems": int(max_items),
           "items": {"type": "string", "maxLength": int(item_max_chars)}}
    keys = ["themes", "moods", "genres", "eras", "keywords"]
    props: dict[str, Any] = {k: dict(lst) for k in keys}
    props["summary"] = {"type": "string", "maxLength": int(summary_max_chars)}
    return {"type": "object", "properties": props, "required": keys + ["summary"],
            "additionalProperties": False}


# -- parsing -------------------------------------------------------------------------------------
class RankingParseError(ValueError):
    """Nothing usable in the answer; the message says why, in words the model can act on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass
class ParsedRanking:
    """What a ranking answer said.

    ``order``: valid labels, first occurrence wins. ``reasons``: label -> non-empty reason.
    ``invalid_ids``: ids that are no candidate label (as given, cut to 60 chars).
    ``duplicates``: labels that were repeated (each once, in the order seen).
    ``repaired``: the answer was not the exact requested shape and the parser forgave something
    (code fence, prose around it, single quotes, trailing commas, a bare list, another key name,
    ids like "A." or "A: Title" or in the wrong case, truncated JSON); ``notes`` say what.
    """

    order: list[str]
    reasons: dict[str, str] = field(default_factory=dict)
    invalid_ids: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    repaired: bool = False
    notes: list[str] = field(default_factory=list)


class _EOF(Exception):
    """The text ended inside a value; ``partial`` is what was complete (or _MISSING)."""

    def __init__(self, partial: Any):
        self.partial = partial


class _Bad(Exception):
    """Not parseable from here."""


_MISSING = object()
_NUM_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLOSERS = {'"': '"', "'": "'", "\u201c": "\u201d", "\u201d": "\u201d"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", '"': '"', "'": "'"}


class _Lenient:
    """A forgiving JSON reader: single or curly quotes, bare keys, trailing or doubled commas,
    Python's True/False/None, and truncation (the complete part is kept, see :class:`_EOF`).

    In ``smart`` mode a closing quote only counts when ``, : } ]`` or the end follows, so
    ``"reason": "like "Alien" but"`` reads as one string (always so for single quotes:
    apostrophes).
    """

    def __init__(self, text: str, smart: bool = False, max_depth: int = 32):
        self.s = text
        self.n = len(text)
        self.i = 0
        self.smart = smart
        self.max_depth = max_depth
        self.tolerated = False

    def parse_at(self, pos: int) -> tuple[Any, bool]:
        """The value starting at pos, and whether the text was truncated inside it."""
        self.i = pos
        try:
            return self.value(0), False
        except _EOF as e:
            if e.partial is _MISSING:
                raise _Bad() from None
            return e.partial, True

    def ws(self) -> None:
        s, n, i = self.s, self.n, self.i
        while i < n and s[i] in " \t\r\n\u00a0":
            i += 1
        self.i = i

    def value(self, depth: int) -> Any:
        if depth > self.max_depth:
            raise _Bad()
        self.ws()
        if self.i >= self.n:
            raise _EOF(_MISSING)
        c = self.s[self.i]
        if c == "{":
            return self.obj(depth + 1)
        if c == "[":
            return self.arr(depth + 1)
        if c in _CLOSERS:
            return self.string()
        m = _NUM_RE.match(self.s, self.i)
        if m:
            self.i = m.end()
            txt = m.group(0)
            if len(txt) > 40:
                return txt
            try:
                return float(txt) if any(ch in txt for ch in ".eE") else int(txt)
            except (ValueError, OverflowError):
                return txt
        m = _WORD_RE.match(self.s, self.i)
        if m:
            self.i = m.end()
            w = m.group(0)
            lw = w.lower()
            if lw in ("true", "false"):
                return lw == "true"
            if lw in ("null", "none"):
                return None
            self.tolerated = True
            return w
        raise _Bad()

    def string(self) -> str:
        s, n = self.s, self.n
        q = s[self.i]
        close = _CLOSERS[q]
        if q != '"':
            self.tolerated = True
        smart = self.smart or q != '"'
        i = self.i + 1
        buf: list[str] = []
        while True:
            if i >= n:
                raise _EOF(_MISSING)
            c = s[i]
            if c == "\\":
                if i + 1 >= n:
                    raise _EOF(_MISSING)
                e = s[i + 1]
                if e == "u":
                    hx = s[i + 2:i + 6]
                    if len(hx) < 4 and i + 6 > n:
                        raise _EOF(_MISSING)
                    if re.fullmatch(r"[0-9a-fA-F]{4}", hx):
                        cp = int(hx, 16)
                        buf.append("\ufffd" if 0xD800 <= cp <= 0xDFFF else chr(cp))
                        i += 6
                        continue
                    buf.append("u")
                    i += 2
                    continue
                buf.append(_ESCAPES.get(e, e))
                i += 2
                continue
            if c == close:
                if smart:
                    j = i + 1
                    while j < n and s[j] in " \t\r\n":
                        j += 1
                    if j < n and s[j] not in ",:}]":
                        buf.append(c)
                        i += 1
                        continue
                self.i = i + 1
                return "".join(buf)
            buf.append(c)
            i += 1

    def key(self) -> str:
        c = self.s[self.i]
        if c in _CLOSERS:
            return self.string()
        m = _WORD_RE.match(self.s, self.i)
        if m:
            self.i = m.end()
            self.tolerated = True
            return m.group(0)
        raise _Bad()

    def obj(self, depth: int) -> dict[str, Any]:
        self.i += 1
        d: dict[str, Any] = {}
        expect_sep = False
        while True:
            self.ws()
            if self.i >= self.n:
                raise _EOF(d)
            c = self.s[self.i]
            if c == "}":
                self.i += 1
                return d
            if c == ",":
                if not expect_sep:
                    self.tolerated = True  # leading or doubled comma
                self.i += 1
                expect_sep = False
                continue
            if expect_sep:
                self.tolerated = True  # missing comma
            try:
                k = self.key()
            except _EOF:
                raise _EOF(d) from None
            self.ws()
            if self.i >= self.n:
                raise _EOF(d)
            if self.s[self.i] not in ":=":
                raise _Bad()
            self.i += 1
            try:
                v = self.value(depth)
            except _EOF as e:
                if isinstance(e.partial, (dict, list)):
                    d[k] = e.partial  # a truncated list inside an object keeps its complete part
                raise _EOF(d) from None
            d[k] = v
            expect_sep = True

    def arr(self, depth: int) -> list[Any]:
        self.i += 1
        out: list[Any] = []
        expect_sep = False
        while True:
            self.ws()
            if self.i >= self.n:
                raise _EOF(out)
            c = self.s[self.i]
            if c == "]":
                self.i += 1
                return out
            if c == ",":
                if not expect_sep:
                    self.tolerated = True
                self.i += 1
                expect_sep = False
                continue
            if expect_sep:
                self.tolerated = True
            try:
                v = self.value(depth)
            except _EOF:
                raise _EOF(out) from None  # an element cut off in the middle is dropped
            out.append(v)
            expect_sep = True


_FENCE_RE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_ID_KEYS = ("id", "label", "candidate", "item", "choice", "letter", "key", "option")
_REASON_KEYS = ("reason", "why", "explanation", "because", "rationale", "justification", "note", "comment")
_LIST_KEYS = ("ranking", "rankings", "ranked", "rank", "recommendations", "recommended", "reasons",
              "items", "results", "candidates", "order", "answer", "list", "picks")
_PREFIX_RE = re.compile(r"^(?:label|candidate|option|item|choice|id)\b\s*[:#]?\s*", re.I)
_TOKEN_RE = re.compile(r"^[(\[#]?\s*([^\s.:)\]\-\u2013\u2014,;(\[]+)(?:\s*[)\]]|\s*[.:\-\u2013\u2014,;]|\s*$)")
_PLAIN_TOKEN_RE = re.compile(r"^(?:\d{1,2}[.)])?[(\[]?([A-Za-z])[)\]]?[.:]?$")
_NUMBERING_RE = re.compile(r"^\d{1,2}[.)]$")


def _json_candidates(text: str) -> Iterator[tuple[Any, bool, list[str]]]:
    """Each dict or list in the text that could be the answer, in order: (value, forgiven, notes).

    The whole text as strict JSON first; then the body of a code fence; then every top-level
    '{' or '[' (at most 20 tries per text; a value found skips what it spans), strict JSON first
    and the lenient reader after it.
    """
    try:
        v = json.loads(text)
        if isinstance(v, (dict, list)):
            yield v, False, []
            return
    except (ValueError, RecursionError):
        pass
    m = _FENCE_RE.search(text)
    if m and m.group(1).strip():
        body = m.group(1).strip()
        try:
            v = json.loads(body)
            if isinstance(v, (dict, list)):
                yield v, True, ["code fence"]
        except (ValueError, RecursionError):
            pass
        for v, notes in _scan(body):
            yield v, True, ["code fence"] + notes
    for v, notes in _scan(text):
        yield v, True, notes


def _scan(body: str) -> Iterator[tuple[Any, list[str]]]:
    decoder = json.JSONDecoder()
    pos, tries = 0, 0
    while tries < 20:
        st = min((i for i in (body.find("{", pos), body.find("[", pos)) if i >= 0), default=-1)
        if st < 0:
            return
        tries += 1
        value: Any = _MISSING
        notes: list[str] = []
        end = st + 1
        try:
            value, end = decoder.raw_decode(body, st)
            if st > 0 or body[end:].strip():
                notes.append("text around the JSON")
        except (ValueError, RecursionError):
            value = _MISSING
        if not isinstance(value, (dict, list)):
            value = _MISSING
            for smart in (False, True):
                p = _Lenient(body, smart=smart)
                try:
                    v, truncated = p.parse_at(st)
                except (_Bad, RecursionError):
                    continue
                if not isinstance(v, (dict, list)):
                    continue
                value, end = v, max(p.i, st + 1)
                if p.tolerated or smart:
                    notes.append("lenient JSON (quotes, commas or bare words)")
                if truncated:
                    notes.append("truncated JSON, kept the complete entries")
                elif st > 0 or body[p.i:].strip():
                    notes.append("text around the JSON")
                break
        if value is _MISSING:
            pos = st + 1
            continue
        yield value, notes
        pos = end


def _find_entries(value: Any, key: str = "ranking") -> tuple[list[Any] | None, str | None]:
    """The list of entries in a parsed answer, and a note when it was not under ``key``."""
    if isinstance(value, list):
        if len(value) == 1 and isinstance(value[0], dict) and not _entry_id_key(value[0]):
            inner, _ = _find_entries(value[0], key)
            if inner is not None:
                return inner, "answer wrapped in a list"
        return value, "bare list instead of an object"
    if not isinstance(value, dict):
        return None, None
    lower = {str(k).lower(): k for k in value}
    if key in value:
        found, note = value[key], None
    elif key.lower() in lower:
        found, note = value[lower[key.lower()]], f"key {lower[key.lower()]!r}"
    else:
        alt = next((lower[k] for k in _LIST_KEYS if k in lower), None)
        if alt is not None:
            found, note = value[alt], f"key {alt!r} instead of {key!r}"
        elif _entry_id_key(value):
            return [value], "a single entry instead of a list"
        else:
            lists = [v for v in value.values() if isinstance(v, list)]
            if len(lists) == 1:
                return lists[0], f"unexpected key instead of {key!r}"
            if value and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                return [{"id": k, "reason": v} for k, v in value.items()], "an object of id: reason"
            return None, None
    if isinstance(found, list):
        return found, note
    if isinstance(found, dict):
        if _entry_id_key(found):
            return [found], "a single entry instead of a list"
        if found and all(isinstance(v, str) for v in found.values()):
            return [{"id": k, "reason": v} for k, v in found.items()], "an object of id: reason"
        return None, None
    if isinstance(found, str):
        parts = [p for p in re.split(r"[\s,;>]+", found) if p]
        return parts, "ids as one string"
    return None, None


def _entry_id_key(d: dict[Any, Any]) -> Any:
    lower = {str(k).lower(): k for k in d}
    for k in _ID_KEYS:
        if k in lower:
            return lower[k]
    return None


def _short(v: Any, limit: int = 60) -> str:
    if isinstance(v, str):
        s = v
    else:
        try:
            s = json.dumps(v, ensure_ascii=False)
        except (TypeError, ValueError, RecursionError):
            s = repr(type(v).__name__)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _clean_reason(v: Any) -> str:
    if v is None or isinstance(v, (dict, list)):
        return ""
    s = " ".join(str(v).split())
    return s[:MAX_REASON_CHARS]


class _Resolver:
    def __init__(self, labels: list[str], titles: Mapping[str, str] | None):
        self.labels = labels
        self.labelset = set(labels)
        self.by_lower: dict[str, list[str]] = {}
        for lab in labels:
            self.by_lower.setdefault(lab.lower(), []).append(lab)
        self.by_title: dict[str, list[str]] = {}
        for lab, title in (titles or {}).items():
            if lab in self.labelset and isinstance(title, str):
                key = normalize_title(title)[0]
                if key:
                    self.by_title.setdefault(key, []).append(lab)

    def _token(self, tok: str) -> str | None:
        if tok in self.labelset:
            return tok
        hits = self.by_lower.get(tok.lower(), [])
        return hits[0] if len(hits) == 1 else None

    def resolve(self, raw: str) -> tuple[str | None, bool]:
        """(label, tolerated) for an id as the model wrote it; (None, False) when it is none."""
        s = raw.strip()
        if s in self.labelset:
            return s, s != raw
        core = _PREFIX_RE.sub("", s.strip("\"'`*_ \t")).strip()
        if not core:
            return None, False
        lab = self._token(core)
        if lab is not None:
            return lab, True
        m = _TOKEN_RE.match(core)
        if m:
            lab = self._token(m.group(1))
            if lab is not None:
                return lab, True
        if self.by_title:
            rest = re.sub(r"^[(\[]?\S{1,3}?[)\]]?\s*[.:\-\u2013\u2014]\s+", "", core)
            for cand in (core, rest):
                hits = self.by_title.get(normalize_title(cand)[0], [])
                if len(hits) == 1:
                    return hits[0], True
        return None, False


def _plain_labels(text: str) -> list[str] | None:
    """"C, A, B" or "1. C\\n2. A" or a lone "C": ids as plain text; None when it is not that."""
    tokens = [t for t in re.split(r"[\s,;]+", text.strip()) if t]
    if not tokens or len(tokens) > 120:
        return None
    out: list[str] = []
    for t in tokens:
        if _NUMBERING_RE.match(t):
            continue
        m = _PLAIN_TOKEN_RE.match(t.strip("\"'`*"))
        if not m:
            return None
        out.append(m.group(1))
    return out or None


def parse_ranking(text: str, labels: Sequence[str], *, titles: Mapping[str, str] | None = None,
                  key: str = "ranking") -> ParsedRanking:
    """Read a ranking answer; raise :class:`RankingParseError` when nothing valid is in it.

    ``labels`` are the candidate labels shown. ``titles`` (label -> title), when given, also lets
    an entry name a candidate by its title. The first JSON value in the answer that yields a valid
    label wins (so prose like "[Final]" before the JSON does not hide it); an answer with no JSON
    may be a plain list of labels ("C, A, B" or "1. C 2. A"). Ids are matched exactly, then
    forgivingly: surrounding quotes or "Label"/"Candidate" prefixes, "A.", "A)", "(A)",
    "A: Title", "A - Title", and another case when only one label matches. Numbers are never read
    as positions ("1" is an invalid id unless "1" is a label): whether 1 means the first candidate
    or the second is a guess. Never raises anything but RankingParseError for any string.
    """
    labs = [str(x) for x in labels] if labels is not None else []
    labs = list(dict.fromkeys(x for x in labs if x))
    if not labs:
        raise RankingParseError("there are no candidate labels to rank")
    if not isinstance(text, str):
        raise RankingParseError("the answer is not text")
    text = text[:MAX_ANSWER_CHARS].strip()
    valid_list = ", ".join(labs)
    shape = f'{{"{key}": [{{"id": "<label>", "reason": "..."}}]}}'
    if not text:
        raise RankingParseError(f"The answer is empty. Answer with JSON only: {shape}, "
                                f"using only these labels: {valid_list}.")
    resolver = _Resolver(labs, titles)
    first_error: RankingParseError | None = None
    for value, forgiven, notes in _json_candidates(text):
        entries, note = _find_entries(value, key)
        if entries is None:
            err = RankingParseError(f'The answer has no "{key}" list. Answer with JSON only: {shape}, '
                                    f"using only these labels: {valid_list}.")
        else:
            if note:
                forgiven = True
                notes = notes + [note]
            try:
                return _interpret(entries, resolver, forgiven, notes, key, shape, valid_list)
            except RankingParseError as e:
                err = e
        first_error = first_error or err
    plain = _plain_labels(text)
    if plain is not None:
        try:
            return _interpret(plain, resolver, True, ["plain list of labels instead of JSON"],
                              key, shape, valid_list)
        except RankingParseError as e:
            first_error = first_error or e
    if first_error is not None:
        raise first_error
    raise RankingParseError(f"The answer contains no JSON. Answer with JSON only: {shape}, "
                            f"using only these labels: {valid_list}.")


def _interpret(entries: list[Any], resolver: _Resolver, forgiven: bool, notes: list[str],
               key: str, shape: str, valid_list: str) -> ParsedRanking:
    if not entries:
        raise RankingParseError(f'The "{key}" list is empty. List candidates by label, best first: '
                                f"{shape}, using only these labels: {valid_list}.")
    notes = list(notes)
    order: list[str] = []
    reasons: dict[str, str] = {}
    invalid: list[str] = []
    duplicates: list[str] = []
    seen: set[str] = set()
    missing_id = 0
    loose_note = "ids written loosely (e.g. 'A.' or 'A: Title')"
    for e in entries:
        raw: Any
        reason = ""
        if isinstance(e, dict):
            idk = _entry_id_key(e)
            lower = {str(k).lower(): k for k in e}
            rk = next((lower[k] for k in _REASON_KEYS if k in lower), None)
            reason = _clean_reason(e[rk]) if rk is not None else ""
            if idk is None:
                tk = lower.get("title") or lower.get("name")
                if tk is not None and isinstance(e[tk], str):
                    raw = e[tk]
                    forgiven = True
                else:
                    missing_id += 1
                    invalid.append(_short(e))
                    continue
            else:
                raw = e[idk]
                if idk != "id":
                    forgiven = True
                    if f"key {idk!r} for the id" not in notes:
                        notes.append(f"key {idk!r} for the id")
        elif isinstance(e, list) and e and isinstance(e[0], str):
            raw = e[0]
            reason = _clean_reason(e[1]) if len(e) > 1 and isinstance(e[1], str) else ""
            forgiven = True
        else:
            raw = e
            if isinstance(e, str):
                forgiven = True  # a bare id instead of {"id": ..., "reason": ...}
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            invalid.append(_short(raw))
            continue
        raw_s = raw if isinstance(raw, str) else _short(raw)
        lab, fixed = resolver.resolve(raw_s)
        if lab is None:
            invalid.append(_short(raw_s))
            continue
        if fixed:
            forgiven = True
            if loose_note not in notes:
                notes.append(loose_note)
        if lab in seen:
            if lab not in duplicates:
                duplicates.append(lab)
            continue
        seen.add(lab)
        order.append(lab)
        if reason:
            reasons[lab] = reason
    if not order:
        if missing_id and missing_id == len(invalid):
            raise RankingParseError(f'No entry has an "id". Each entry must be {{"id": "<label>", '
                                    f'"reason": "..."}} with one of these labels: {valid_list}.')
        shown = ", ".join(repr(x) for x in invalid[:5]) + (" ..." if len(invalid) > 5 else "")
        raise RankingParseError(f"None of the ids in the answer is a candidate label ({shown}). "
                                f"Use only these labels, each once: {valid_list}.")
    return ParsedRanking(order=order, reasons=reasons, invalid_ids=invalid, duplicates=duplicates,
                         repaired=bool(forgiven), notes=notes)


def parse_reasons(text: str, labels: Sequence[str], *, titles: Mapping[str, str] | None = None) -> ParsedRanking:
    """Read the explain prompt's ``{"reasons": [{"id", "reason"}]}`` answer (same rules)."""
    return parse_ranking(text, labels, titles=titles, key="reasons")


# -- scores and fusion ---------------------------------------------------------------------------
def complete_order(order: Iterable[T], fallback: Iterable[T]) -> list[T]:
    """``order`` (repeats dropped) followed by the fallback items it left out, in fallback order."""
    out: list[T] = []
    seen: set[T] = set()
    for x in list(order) + list(fallback):
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def scores_from_order(order: Sequence[T]) -> dict[T, float]:
    """Rank-based scores in (0, 1]: the item at 0-based rank r of L gets ``1 - r / L``.

    The first gets 1.0, the last 1/L; repeats keep their first rank (L counts distinct items).
    """
    uniq = list(dict.fromkeys(order))
    n = len(uniq)
    return {x: 1.0 - r / n for r, x in enumerate(uniq)}


def softmax(logits: Mapping[T, float], temperature: float = 1.0) -> dict[T, float]:
    """Probabilities from logits (numerically stable). NaN and -inf get 0; all -inf: uniform."""
    if not logits:
        return {}
    if not temperature or temperature <= 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive number, not {temperature!r}")
    vals: dict[T, float] = {}
    for k, v in logits.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = float("-inf")
        vals[k] = float("-inf") if math.isnan(f) else f
    finite = [v for v in vals.values() if v != float("-inf")]
    if any(v == float("inf") for v in finite):
        tops = [k for k, v in vals.items() if v == float("inf")]
        return {k: (1.0 / len(tops) if k in tops else 0.0) for k in vals}
    if not finite:
        return {k: 1.0 / len(vals) for k in vals}
    m = max(finite)
    ex = {k: (math.exp((v - m) / temperature) if v != float("-inf") else 0.0) for k, v in vals.items()}
    total = sum(ex.values())
    return {k: e / total for k, e in ex.items()}


def _minmax(scores: Mapping[T, float], keys: Iterable[T]) -> dict[T, float]:
    vals = {k: float(scores[k]) for k in keys if k in scores and _finite(scores[k])}
    if not vals:
        return {}
    lo, hi = min(vals.values()), max(vals.values())
    if hi - lo <= 1e-12 * max(1.0, abs(hi), abs(lo)):
        return {k: 0.5 for k in vals}
    return {k: (v - lo) / (hi - lo) for k, v in vals.items()}


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def fuse(llm_scores: Mapping[T, float], retrieval_scores: Mapping[T, float], weight: float) -> dict[T, float]:
    """``weight * llm + (1 - weight) * retrieval`` over the candidates, best first.

    The candidates are the retrieval candidates plus any the LLM scored. Each score set is
    min-max normalised to [0, 1] over the candidates it scores (all equal -> 0.5 each); a candidate
    missing from a set (or with a NaN/inf score there) gets 0 for that set. ``weight`` 1.0 is the
    LLM only, 0.0 retrieval only. The result is ordered by fused score, ties in candidate order.
    """
    w = float(weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"fusion weight must be within [0, 1], not {weight!r}")
    keys = list(dict.fromkeys(list(retrieval_scores) + list(llm_scores)))
    ln = _minmax(llm_scores, keys)
    rn = _minmax(retrieval_scores, keys)
    fused = {k: w * ln.get(k, 0.0) + (1.0 - w) * rn.get(k, 0.0) for k in keys}
    pos = {k: i for i, k in enumerate(keys)}
    return dict(sorted(fused.items(), key=lambda kv: (-kv[1], pos[kv[0]])))


def ranked(scores: Mapping[T, float]) -> list[T]:
    """Keys by score, highest first; ties keep the mapping's order."""
    pos = {k: i for i, k in enumerate(scores)}
    return sorted(scores, key=lambda k: (-float(scores[k]), pos[k]))


def aggregate_permutations(score_dicts: Iterable[Mapping[T, float]]) -> dict[T, float]:
    """Mean score per key over B runs (e.g. B shuffled candidate orders); a key a run lacks counts 0.

    Keys keep the order in which they first appear; empty input gives {}.
    """
    dicts = list(score_dicts)
    if not dicts:
        return {}
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    b = len(dicts)
    return {k: sum(float(d.get(k, 0.0)) for d in dicts) / b for k in keys}


def shuffled_orders(items: Sequence[T], B: int, seed: int | str = 0,
                    include_original: bool = False) -> list[list[T]]:
    """B permutations of items, the same for the same (items, B, seed).

    With ``include_original`` the first is the order as given. Each is a new list.
    """
    if not isinstance(B, int) or B < 0:
        raise ValueError(f"B must be a non-negative int, not {B!r}")
    rng = random.Random(seed)
    base = list(items)
    out: list[list[T]] = []
    for b in range(B):
        perm = list(base)
        if not (include_original and b == 0):
            rng.shuffle(perm)
        out.append(perm)
    return out
