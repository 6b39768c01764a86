"""What feedback does to a chat session: liked items join the history, disliked and refused ones
are excluded, consumed ones are added (a part of :class:`ChatSession`)."""

from __future__ import annotations

import time
from pathlib import Path

from mediarec.catalog.model import Interaction, Item
from mediarec.chat.intents import Consumed
from mediarec.chat.references import _Ambiguous, _NotFound
from mediarec.chat.state import SessionReply


class FeedbackActions:
    """Feedback applied to the session's interactions and exclusions; every change clears the
    cached profile, so the next list's query vectors move with it."""

    def _more_like(self, numbers: tuple[int, ...]) -> SessionReply:
        try:
            items = [self._shown_item(n) for n in numbers]
        except _NotFound as e:
            return SessionReply(kind="error", text=e.message)
        for it in items:
            self._add_interaction(it, "like")
        self.last_mentioned = items[-1].id
        names = ", ".join(it.label for it in items)
        return self._reask_or_ack(f"Noted that you like {names}; more like it:")

    def _not_shown(self, numbers: tuple[int, ...]) -> SessionReply:
        try:
            items = [self._shown_item(n) for n in numbers]
        except _NotFound as e:
            return SessionReply(kind="error", text=e.message)
        for it in items:
            if it.id not in self.excluded:
                self.excluded.append(it.id)
        self._profile_cache = None
        names = ", ".join(it.label for it in items)
        return self._reask_or_ack(f"OK, I won't suggest {names} again.")

    def _consumed(self, intent: Consumed) -> SessionReply:
        try:
            item = self._find(intent.title)
        except _Ambiguous as e:
            return self._clarify("consumed", e, {"verb": intent.verb, "liked": intent.liked})
        except _NotFound as e:
            return SessionReply(kind="error", text=e.message)
        return self._add_consumed(item, intent.verb, intent.liked)

    def _add_consumed(self, item: Item, verb: str = "watched", liked: bool | None = None) -> SessionReply:
        if liked is False:
            return self._apply_feedback(item, False)
        event = "like" if liked else ("play" if item.kind in ("track", "album", "artist") else "watch")
        self._add_interaction(item, event)
        self.last_mentioned = item.id
        tail = " and that you liked it" if liked else ""
        return SessionReply(kind="ack", text=f"Added {item.label} to your history{tail}. "
                                             "It won't be recommended again; say 'I liked it' or 'didn't like it' "
                                             "to tell me more.")

    def _add_interaction(self, item: Item, event: str, rating: float | None = None) -> None:
        with self._lock:
            self.interactions = [x for x in self.interactions if x.item != item.id]
            self.interactions.append(Interaction(user=self.session_user, item=item.id, timestamp=time.time(),
                                                 event=event, rating=rating))
            self._record(self.interactions[-1])
            if item.id in self.disliked:
                self.disliked.remove(item.id)
            if item.id in self.excluded:
                self.excluded.remove(item.id)
            self._profile_cache = None

    def _record(self, event: Interaction) -> None:
        """Hand a like, dislike or watch to ``on_event`` (``chat --save-feedback``: :func:`feedback_session`)."""
        if self.on_event is not None:
            self.on_event(event)

    def feedback(self, item_ref: int | str | Item, liked: bool) -> SessionReply:
        """Like (a liked interaction, used as history) or dislike (excluded, never history) an item:
        a shown rank, "it", an id, a title or an Item."""
        try:
            item = self._resolve(item_ref)
        except _Ambiguous as e:
            return self._clarify("like" if liked else "dislike", e)
        except _NotFound as e:
            return SessionReply(kind="error", text=e.message)
        return self._apply_feedback(item, liked)

    def _apply_feedback(self, item: Item, liked: bool) -> SessionReply:
        self.last_mentioned = item.id
        if liked:
            self._add_interaction(item, "like")
            return SessionReply(kind="ack", text=f"Glad you liked {item.label}; it now counts in your taste.")
        with self._lock:
            self.interactions = [x for x in self.interactions if x.item != item.id]
            if item.id not in self.disliked:
                self.disliked.append(item.id)
            if item.id not in self.excluded:
                self.excluded.append(item.id)
            self._profile_cache = None
            self._record(Interaction(user=self.session_user, item=item.id, timestamp=time.time(), event="dislike"))
        return SessionReply(kind="ack", text=f"Noted: not {item.label}. It won't be recommended again, and "
                                             "what is like it moves down.")


def feedback_session(rec, user: str | None, use_profile: bool = False, home: Path | None = None):
    """(a chat session whose likes, dislikes and watches go to the catalog's log, what to tell the user).

    ``user``: a person of the catalog starts from their history; a new id starts empty and the
    events are saved under it, so the next build knows them; no id saves them as ``me``."""
    from mediarec.catalog.feedback import feedback_log
    from mediarec.chat.session import ChatSession

    log = feedback_log(rec.catalog.name, home)
    known = user is not None and user in rec.catalog.by_user
    session = ChatSession(rec, user=user if known else None, session_user=user or "me", use_profile=use_profile)
    session.on_event = log.append
    who = "" if known or user is None else f" (new to {rec.catalog.name}: starting from an empty history)"
    return session, (f"saving your likes, dislikes and watches as {session.session_user}{who} to {log.path}; "
                     f"the next `mediarec index --dataset {rec.catalog.name}` learns from them")
