"""Read what an LLM ranked: :func:`parse_ranking` reads an explained list forgivingly.

The model answers ``{"ranking": [{"id": "<label>", "reason": "..."}]}`` (or the explain prompt's
``{"reasons": [...]}``); the parser says what it had to forgive, or raises
:class:`RankingParseError` with a message fit for the repair prompt. Finding and reading the
JSON itself is :mod:`mediarec.rank.lenient_json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from mediarec.catalog.titles import normalize_title
from mediarec.rank.lenient_json import json_values

#: Answers longer than this are cut before parsing (a ranking of 52 entries is ~10 KB).
MAX_ANSWER_CHARS = 50_000
#: Longest reason kept from an answer.
MAX_REASON_CHARS = 1000


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


_ID_KEYS = ("id", "label", "candidate", "item", "choice", "letter", "key", "option")
_REASON_KEYS = ("reason", "why", "explanation", "because", "rationale", "justification", "note", "comment")
_LIST_KEYS = ("ranking", "rankings", "ranked", "rank", "recommendations", "recommended", "reasons",
              "items", "results", "candidates", "order", "answer", "list", "picks")
_PREFIX_RE = re.compile(r"^(?:label|candidate|option|item|choice|id)\b\s*[:#]?\s*", re.I)
_TOKEN_RE = re.compile(r"^[(\[#]?\s*([^\s.:)\]\-\u2013\u2014,;(\[]+)(?:\s*[)\]]|\s*[.:\-\u2013\u2014,;]|\s*$)")
_PLAIN_TOKEN_RE = re.compile(r"^(?:\d{1,2}[.)])?[(\[]?([A-Za-z])[)\]]?[.:]?$")
_NUMBERING_RE = re.compile(r"^\d{1,2}[.)]$")


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
    for value, forgiven, notes in json_values(text):
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
