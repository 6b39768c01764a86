"""Prompt templates: find them, render them to chat messages, and quote catalog text as data.

Templates are Jinja2 files named ``NAME.system.j2`` and ``NAME.user.j2``; either may be absent.
The shipped ones are package data (``mediarec/prompts/``), read with ``importlib.resources``
so they load from a wheel or a zip as well as from a checkout. A user's own directory overrides
them file by file, so a user can replace ``rank.system.j2`` and keep the shipped ``rank.user.j2``. Files whose name starts with
``_`` (``_macros.j2``) are helpers imported by the templates, not prompts of their own.

Context contract (what every shipped template may use; each template's header says which):

* ``history``: list of ``{"item": Item, "rating": float | None, "event": str}``, oldest first and
  newest LAST (build it with :func:`history_entries`). No user id, only the items.
* ``candidates``: list of ``{"label": str, "item": Item}`` in the order shown to the model
  (build it with :func:`candidate_entries`; labels from :func:`labels`).
* ``request``: the user's free-text wish or None. ``n``: how many to return.
* ``reason_words``: word limit of one reason. ``kind_word``: "watch", "listen to" or
  "watch or listen to" (derived from the candidates when not given).
* ``detail`` (explain), ``previous``/``error``/``labels``/``answer_key`` (repair),
  ``item``/``max_words`` (summary), ``summary_words`` (profile), ``rating_scale`` (history lines).

Catalog text reaches a prompt only through the ``quote`` filter (see :func:`quote`), which makes it
inert data: one line, no control characters, no template delimiters, no chat-template tokens, no
ASCII double quotes inside, wrapped in double quotes and cut to a length. The compact lines of the
history and the scoring candidates use ``plain``/``compact_title``/``plain_list``: the same
cleaning without the quotes (each line holds one item, and the quotes cost two tokens a title).
"""

from __future__ import annotations

import re
import string
import unicodedata
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Iterable, Mapping

import jinja2

from mediarec.catalog.model import Item
from mediarec.errors import ConfigError
from mediarec.rank.evidence import decade

LABEL_CHARS = string.ascii_uppercase + string.ascii_lowercase
MAX_LABELS = len(LABEL_CHARS)  # 52

#: Values used when a render call leaves an optional variable out. Required ones (history,
#: candidates, n, item, previous, error, labels) have no default: StrictUndefined reports them.
DEFAULTS: dict[str, Any] = {
    "request": None,
    "reason_words": 25,
    "detail": False,
    "rating_scale": 5,
    "answer_key": "ranking",
    "summary_words": 40,
    "max_words": 40,
}

_ROLES = ("system", "user")
_TEMPLATE_RE = re.compile(r"^(?P<name>[A-Za-z0-9][\w-]*)\.(?P<role>system|user)\.j2$")


# -- labels --------------------------------------------------------------------------------------
def labels(n: int) -> list[str]:
    """The first n labels; more than 52 candidates cannot be labelled with single tokens."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 0:
        raise ValueError(f"number of labels must be a non-negative int, not {n!r}")
    if n > MAX_LABELS:
        raise ValueError(f"{n} candidates but only {MAX_LABELS} single-token labels (A-Z, a-z)")
    return list(LABEL_CHARS[:n])


# -- context helpers -----------------------------------------------------------------------------
def candidate_entries(items: Iterable[Item]) -> list[dict[str, Any]]:
    """``[{"label": "A", "item": item}, ...]`` in the given order (at most 52 items)."""
    items = list(items)
    return [{"label": lab, "item": it} for lab, it in zip(labels(len(items)), items)]


def history_entries(pairs: Iterable[Any], max_items: int | None = None, step: int = 1) -> list[dict[str, Any]]:
    """History entries, oldest first, from Items or ``(Item, Interaction | None)`` pairs.

    Only the item, the rating and the event kind are kept: never the user id or the timestamp.
    ``max_items`` keeps the most recent ones; with ``step`` > 1 the first one kept moves only every
    ``step`` additions (:func:`cut_start`).
    """
    out: list[dict[str, Any]] = []
    for p in pairs:
        if isinstance(p, Mapping):
            out.append({"item": p["item"], "rating": p.get("rating"), "event": p.get("event") or "watch"})
            continue
        if isinstance(p, tuple):
            item, x = p[0], (p[1] if len(p) > 1 else None)
        else:
            item, x = p, None
        out.append({"item": item,
                    "rating": getattr(x, "rating", None) if x is not None else None,
                    "event": getattr(x, "event", None) or "watch"})
    if max_items is not None:
        out = out[cut_start(len(out), max_items, step):] if max_items > 0 else []
    return out


def cut_start(n: int, max_items: int, step: int = 1) -> int:
    """Where a history of ``n`` items starts being shown: the most recent ``max_items``, the start
    rounded up to a multiple of ``step``. So a chat that adds one item per turn keeps the same
    first lines for ``step`` turns, and the model's evaluated state of them is reused (between
    ``max_items - step + 1`` and ``max_items`` items are shown)."""
    over = n - max_items
    return 0 if over <= 0 else -(-over // step) * step


_WATCH = {"movie", "series", "video"}
_LISTEN = {"track", "album", "artist"}


def kind_word_for(items: Iterable[Any]) -> str:
    """"watch" for films/series, "listen to" for music, "watch or listen to" for a mix."""
    kinds = {getattr(it, "kind", None) if not isinstance(it, Mapping) else it.get("kind") for it in items}
    kinds.discard(None)
    if kinds and kinds <= _WATCH:
        return "watch"
    if kinds and kinds <= _LISTEN:
        return "listen to"
    return "watch or listen to"


# -- quoting -------------------------------------------------------------------------------------
_KEEP_CF = {"\u200d"}  # zero-width joiner, kept only inside emoji sequences
_SPECIAL_TOKEN_RE = re.compile(r"\[/?[A-Z][A-Z_]{1,30}\]")  # [INST], [/INST], [SYSTEM_PROMPT], ...
_WS_RE = re.compile(r"\s+")
_BLANK_RUN_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _clean_chars(text: str) -> str:
    out: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        if ch.isspace():
            out.append(" ")
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn") and ch not in _KEEP_CF:
            continue
        if ch in _KEEP_CF:  # keep a ZWJ only between two symbols (emoji ZWJ sequences)
            prev = out[-1] if out else ""
            nxt = text[i + 1] if i + 1 < n else ""
            if not (prev and nxt and unicodedata.category(prev) in ("So", "Mn", "Sk")
                    and unicodedata.category(nxt) in ("So", "Sk")):
                continue
        out.append(ch)
    return "".join(out)


def answer_start(title: str, max_len: int = 120) -> str:
    """A title as the start of the model's answer (a prefill): one line, no control characters,
    cut short. Not quoted: the model continues it as its own sentence's subject."""
    return " ".join(_clean_chars(str(title)).split())[:max_len]


def quote(value: Any, max_len: int = 300) -> str:
    """Catalog text as inert data: one line, wrapped in double quotes, at most ``max_len`` chars inside.

    * whitespace (newlines, tabs, any Unicode space) collapses to single spaces;
    * control and format characters (Unicode Cc/Cf: NUL, ESC, bidi overrides, zero-width spaces)
      are dropped, except a zero-width joiner inside an emoji sequence;
    * ASCII ``"`` becomes ``'``, so a field cannot end early and a fake ``{"ranking": ...}`` answer
      is no longer JSON; backticks become ``'`` (no code fences); ``<`` and ``>`` become ``‹ ›``, so
      the templates' ``<<<``/``>>>`` delimiters and chat tokens like ``<|im_end|>`` or ``</s>``
      cannot appear; ``[INST]``-style control tags lose their brackets; ``|`` (the field
      separator) and ``\\`` (JSON escapes) become ``/``;
    * text longer than ``max_len`` characters is cut (on a word boundary when one is near) and
      ends with "…". Other scripts, right-to-left text and emoji are kept as they are.

    None and empty text give ``""`` (an empty quoted field).
    """
    if value is None:
        text = ""
    elif isinstance(value, (list, tuple, set, frozenset)):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    try:
        max_len = int(max_len)
    except (TypeError, ValueError):
        max_len = 300
    max_len = max(max_len, 4)
    # Only the start can be shown; bound the work on a huge field (whitespace may shrink it a lot).
    text = text[: max_len * 8 + 1024]
    text = _clean_chars(text)
    text = (text.replace('"', "'").replace("`", "'").replace("<", "‹").replace(">", "›")
            .replace("|", "/").replace("\\", "/"))
    text = _SPECIAL_TOKEN_RE.sub(lambda m: m.group(0)[1:-1], text)
    text = _WS_RE.sub(" ", text).strip()
    if len(text) > max_len:
        cut = text[: max_len - 1]
        space = cut.rfind(" ")
        if space >= max_len * 0.7:
            cut = cut[:space]
        cut = cut.rstrip(" \u200d,;:.-")
        text = cut + "…"
    return f'"{text}"'


def item_title(item: Any, max_len: int = 120) -> str:
    """``"Alien" (1979)``: the quoted title plus the year unless the title already ends with one."""
    title = _get(item, "title", "")
    year = _get(item, "year", None)
    q = quote(title, max_len)
    if year and not re.search(r"\(\d{4}\)\s*$", str(title)):
        try:
            return f"{q} ({int(year)})"
        except (TypeError, ValueError):
            return q
    return q


def plain(value: Any, max_len: int = 300) -> str:
    """Catalog text made inert as :func:`quote` makes it, without the surrounding quotes: for the
    compact scoring lines, where every token counts (two per title) and the line holds one item."""
    return quote(value, max_len)[1:-1]


def short_year(year: Any) -> str:
    """1996 -> "'96": Qwen spends a token per digit, and "(1996)" costs 6 tokens against 3."""
    try:
        return f"'{int(year) % 100:02d}"
    except (TypeError, ValueError):
        return ""


def compact_title(item: Any, max_len: int = 80) -> str:
    """``Alien '79``: the plain title plus the short year, for the scoring prompt's lines."""
    title = str(_get(item, "title", "") or "")
    year = _get(item, "year", None)
    if year and re.search(r"\(\d{4}\)\s*$", title):
        title = re.sub(r"\s*\(\d{4}\)\s*$", "", title)
    y = short_year(year) if year else ""
    return plain(title, max_len) + (f" {y}" if y else "")


def plain_list(values: Any, max_len: int = 60, max_items: int = 3) -> str:
    """Genres or tags as ``comedy, romance``: lower case, inert like :func:`quote`, no quotes."""
    if values is None:
        return ""
    if isinstance(values, str):
        values = [values]
    vals = [str(v).lower() for v in list(values)[:max_items] if str(v).strip()]
    return plain(", ".join(vals), max_len) if vals else ""


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def quote_list(values: Any, max_len: int = 100, max_items: int = 8) -> str:
    """A short list (genres, tags) joined by ", ", at most max_items, quoted as one field."""
    if values is None:
        return quote("", max_len)
    if isinstance(values, str):
        values = [values]
    vals = [str(v) for v in list(values)[:max_items] if str(v).strip()]
    return quote(", ".join(vals), max_len)


def fmt_rating(r: Any) -> str:
    """4.0 -> "4", 3.5 -> "3.5"."""
    try:
        f = float(r)
    except (TypeError, ValueError):
        return ""
    if f != f:  # NaN
        return ""
    return str(int(f)) if f == int(f) else f"{f:.1f}"


_KINDS = {"movie", "series", "track", "album", "artist", "video", "other"}


def kind_name(kind: Any) -> str:
    """The item kind as a fixed word ("movie", "track", ...); anything else is "other"."""
    return kind if isinstance(kind, str) and kind in _KINDS else "other"


def safe_label(label: Any) -> str:
    """A candidate label as shown: letters and digits only (labels come from :func:`labels`)."""
    s = re.sub(r"[^A-Za-z0-9]", "", str(label))[:8]
    if not s:
        raise ValueError(f"bad candidate label {label!r}")
    return s


# -- library -------------------------------------------------------------------------------------
def shipped_templates() -> Traversable:
    """The templates that ship with mediarec (package data, wherever the package was loaded from)."""
    return files("mediarec") / "prompts"


class _PackageDataLoader(jinja2.BaseLoader):
    """Templates read through ``importlib.resources``: no filesystem path needed, so a wheel
    installed as a zip works too (Jinja's FileSystemLoader needs real directories)."""

    def __init__(self, root: Traversable):
        self.root = root

    def get_source(self, environment: jinja2.Environment, template: str):
        source = self.root / template if "/" not in template else None
        if source is None or not source.is_file():
            raise jinja2.TemplateNotFound(template)
        return source.read_text(encoding="utf-8"), str(source), lambda: True

    def list_templates(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.name.endswith(".j2"))


class PromptLibrary:
    """Prompt templates by name; a user's directory overrides the shipped ones file by file."""

    def __init__(self, user_dir: Path | str | None = None):
        self.user_dir = Path(user_dir).expanduser() if user_dir is not None else None
        if self.user_dir is not None and not self.user_dir.is_dir():
            raise ConfigError(f"prompt directory {self.user_dir} does not exist")
        shipped = shipped_templates()
        if not shipped.is_dir():
            raise ConfigError(f"the shipped prompt templates are missing ({shipped}); reinstall mediarec")
        self.loaders: list[jinja2.BaseLoader] = [_PackageDataLoader(shipped)]
        if self.user_dir is not None:
            self.loaders.insert(0, jinja2.FileSystemLoader(str(self.user_dir)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(self.loaders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["quote"] = quote
        self.env.filters["item_title"] = item_title
        self.env.filters["quote_list"] = quote_list
        self.env.filters["rating"] = fmt_rating
        self.env.filters["kind_name"] = kind_name
        self.env.filters["label"] = safe_label
        self.env.filters["decade"] = decade
        self.env.filters["plain"] = plain
        self.env.filters["compact_title"] = compact_title
        self.env.filters["plain_list"] = plain_list

    def names(self) -> list[str]:
        """Prompt names that have a system or a user template (in any directory)."""
        found = {m.group("name") for loader in self.loaders for t in loader.list_templates()
                 if (m := _TEMPLATE_RE.match(t))}
        return sorted(found)

    def _template(self, name: str, role: str) -> jinja2.Template | None:
        fname = f"{name}.{role}.j2"
        try:
            return self.env.get_template(fname)
        except jinja2.TemplateNotFound as e:
            if e.name == fname:
                return None
            raise ConfigError(f"prompt template {fname} includes a missing template {e.name!r}") from None
        except jinja2.TemplateSyntaxError as e:
            raise ConfigError(f"prompt template {e.filename or fname}:{e.lineno}: {e.message}") from None

    def render(self, name: str, **context: Any) -> list[dict[str, str]]:
        """Chat messages ``[{"role": "system", ...}, {"role": "user", ...}]`` for prompt NAME.

        A missing system or user template is skipped; a name with neither is a ConfigError that
        lists the available names. Each message's content is stripped of surrounding blank lines.
        """
        if not isinstance(name, str) or not _TEMPLATE_RE.match(f"{name}.user.j2"):
            raise ConfigError(f"bad prompt name {name!r}; available: {', '.join(self.names())}")
        ctx = dict(DEFAULTS)
        ctx.update(context)
        if "kind_word" not in ctx:
            cands = ctx.get("candidates") or []
            its = [_get(c, "item") for c in cands if _get(c, "item") is not None]
            if not its and ctx.get("item") is not None:
                its = [ctx["item"]]
            ctx["kind_word"] = kind_word_for(its)
        # Only a mixed catalog needs each history line's kind; elsewhere it costs tokens, no information.
        ctx.setdefault("mixed_kinds", ctx["kind_word"] == "watch or listen to")
        messages: list[dict[str, str]] = []
        for role in _ROLES:
            tpl = self._template(name, role)
            if tpl is None:
                continue
            try:
                content = tpl.render(**ctx)
            except jinja2.UndefinedError as e:
                raise ConfigError(f"prompt template {name}.{role}.j2: {e.message}") from None
            except jinja2.TemplateError as e:
                raise ConfigError(f"prompt template {name}.{role}.j2: {e}") from None
            content = _BLANK_RUN_RE.sub("\n\n", content).strip()  # optional blocks leave blank runs
            messages.append({"role": role, "content": content})
        if not messages:
            raise ConfigError(f"no prompt template named {name!r}; available: {', '.join(self.names())}")
        return messages
