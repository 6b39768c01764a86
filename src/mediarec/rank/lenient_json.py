"""JSON as small models write it: find the first JSON value in an answer and read it forgivingly.

:func:`json_values` yields each dict or list in a text that could be the answer (whole text,
code fence, then every ``{`` or ``[``), reading it strictly first and with :class:`_Lenient`
after that; :func:`first_json_object` is the first dict among them.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator


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


def json_values(text: str) -> Iterator[tuple[Any, bool, list[str]]]:
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


def first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in an answer (code fences, prose around it and lenient syntax forgiven)."""
    if not isinstance(text, str):
        return None
    return next((v for v, _, _ in json_values(text.strip()) if isinstance(v, dict)), None)
