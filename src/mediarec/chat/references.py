"""Which item a chat message means: a shown rank ("2"), "it", an id or a title typed loosely,
and the clarifying question when a title fits several items (a part of :class:`ChatSession`)."""

from __future__ import annotations

import difflib
import re
from typing import Any

from mediarec.catalog.model import Item
from mediarec.catalog.titles import normalize_title
from mediarec.chat.intents import IT_WORDS, shown_rank
from mediarec.chat.state import SessionReply
from mediarec.errors import MediarecError


class _Ambiguous(Exception):
    def __init__(self, ref: str, items: list[Item]):
        super().__init__(ref)
        self.ref, self.items = ref, items


class _NotFound(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class References:
    """Resolving references against the session's catalog, last list (``shown``) and the item
    mentioned last; the session's state lives in :class:`mediarec.chat.session.ChatSession`."""

    def _looks_like_ref(self, ref: str) -> bool:
        ref = ref.strip().lower()
        if ref in IT_WORDS or shown_rank(ref) is not None:
            return True
        try:
            self._find(ref)
            return True
        except _Ambiguous:
            return True
        except _NotFound:
            return False


    def _shown_item(self, n: int) -> Item:
        if not self.shown:
            raise _NotFound("No list shown yet: ask for something first.")
        if not 1 <= n <= len(self.shown):
            raise _NotFound(f"No item {n} in the last list: choose 1 to {len(self.shown)}.")
        return self.catalog.items[self.shown[n - 1]]

    def _find(self, ref: str) -> Item:
        """An id or a title, forgivingly; raises _Ambiguous or _NotFound."""
        ref = ref.strip().strip("\"'“”‘’").strip()
        ref = re.sub(r"\s+(?:again|too|as well|yesterday|today|last night|recently)$", "", ref, flags=re.I)
        if not ref:
            raise _NotFound("Which title? e.g. 'I watched Heat'.")
        if ref in self.catalog.items:
            return self.catalog.items[ref]
        hits = self.catalog.find_titles(ref)
        if not hits:
            # "the album Kind of Blue", "Heat by Michael Mann": try without a leading kind word
            alt = re.sub(r"^(?:the\s+)?(?:film|movie|series|show|album|track|song|artist)\s+", "", ref, flags=re.I)
            if alt != ref:
                hits = self.catalog.find_titles(alt)
        if not hits:
            key = normalize_title(ref)[0]
            close = difflib.get_close_matches(key, list(self.catalog.title_index), n=3, cutoff=0.75)
            sugg = [self.catalog.items[i].label for k in close for i in self.catalog.title_index[k]][:4]
            hint = f" Did you mean: {'; '.join(sugg)}?" if sugg else " Check the spelling, or add the year."
            raise _NotFound(f"No title {ref!r} in the {self.catalog.name} catalog.{hint}")
        if len(hits) > 1:
            key = normalize_title(ref)[0]
            exact = [h for h in hits if normalize_title(h.title)[0] == key]
            if len(exact) == 1:
                return exact[0]
            raise _Ambiguous(ref, (exact or hits)[:8])
        return hits[0]

    def resolve_ref(self, ref: int | str | Item) -> Item:
        """An item from a shown rank (2 or "2"), "it" (the last mentioned), an id or a title.

        Raises MediarecError with a hint when it is unknown or ambiguous.
        """
        try:
            return self._resolve(ref)
        except _Ambiguous as e:
            raise MediarecError(f"{e.ref!r} is ambiguous: " + "; ".join(it.label for it in e.items)) from None
        except _NotFound as e:
            raise MediarecError(e.message) from None

    def _resolve(self, ref: int | str | Item) -> Item:
        if isinstance(ref, Item):
            return self.catalog.item(ref.id)
        if isinstance(ref, int) and not isinstance(ref, bool):
            return self._shown_item(ref)
        s = str(ref).strip()
        rank = shown_rank(s)
        if rank is not None and s not in self.catalog.items:
            return self._shown_item(rank)
        if s.lower() in IT_WORDS:
            if self.last_mentioned is None:
                raise _NotFound("Which one? Say 'I liked 2' or 'I liked <title>'.")
            return self.catalog.items[self.last_mentioned]
        return self._find(s)

    def _clarify(self, action: str, e: _Ambiguous, extra: dict[str, Any] | None = None) -> SessionReply:
        self._pending = (action, [it.id for it in e.items], extra or {})
        opts = [it.label + (f" ({it.kind})" if it.kind not in ("movie",) else "") for it in e.items]
        text = f"{e.ref!r} could be several items; which one? " + \
               "; ".join(f"{i}. {o}" for i, o in enumerate(opts, 1)) + " (answer with the number or the title)"
        return SessionReply(kind="clarify", text=text, options=[it.label for it in e.items])

    def _choose(self, pending: tuple[str, list[str], dict[str, Any]], msg: str) -> SessionReply | None:
        """The answer to a clarifying question, or None when the message is something else."""
        action, ids, extra = pending
        items = [self.catalog.items[i] for i in ids if i in self.catalog.items]
        chosen: Item | None = None
        rank = shown_rank(msg)
        if rank is not None and 1 <= rank <= len(items):
            chosen = items[rank - 1]
        else:
            key, year = normalize_title(msg)
            if year is not None:
                by_year = [it for it in items if it.year == year]
                if len(by_year) == 1:
                    chosen = by_year[0]
            if chosen is None:
                exact = [it for it in items if it.label.lower() == msg.lower().strip() or it.id == msg.strip()]
                if len(exact) == 1:
                    chosen = exact[0]
        if chosen is None:
            return None
        if action == "consumed":
            return self._add_consumed(chosen, extra.get("verb", "watched"), extra.get("liked"))
        if action == "like":
            return self._apply_feedback(chosen, True)
        if action == "dislike":
            return self._apply_feedback(chosen, False)
        return None
