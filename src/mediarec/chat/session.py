"""A conversation with the recommender: requests, feedback, and a history that moves with it.

```python
session = Recommender.from_dataset("demo", llm="none").chat(user="alice")
session.send("something like Alien but funnier")   # a request: a ranked list
session.send("not 3")                              # never show the 3rd one again (and ask again)
session.send("more like 2")                        # the 2nd becomes a liked item; ask again
session.send("no horror")                          # a standing constraint (and ask again)
session.send("from the 90s")                       # another one: both hold until lifted
session.send("like 2 but shorter")                 # the 2nd shown item as the reference
session.clear("horror")                            # lift one (``clear()`` lifts them all)
session.send("I watched Heat")                     # adds to the history (asks which on "Dune")
session.send("I liked it")                         # feedback on the item mentioned last
session.save("alice.json"); ChatSession.load("alice.json", recommender)
```

A message is read by :mod:`mediarec.chat.intents` from its words alone; the session applies the
intent to its state (and reads it as a plain request when it does not fit the catalog). A request is
read by the same parser as ``mediarec recommend`` and merged into the session's standing constraints
(:mod:`mediarec.chat.standing`), which every later list honours until the user lifts them.
Every piece of feedback changes what is passed to retrieval (the history and the excluded ids),
so the user's query vectors move with it; nothing is written into the index. A session file holds
the interactions, the conversation, the exclusions and the constraints: never a key or a setting.
"""

from __future__ import annotations

import difflib
import json
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from mediarec.catalog.model import Interaction, Item
from mediarec.catalog.titles import normalize_title
from mediarec.chat.explain import explain_item
from mediarec.chat import standing
from mediarec.chat.intents import (IT_WORDS, Again, Consumed, Feedback, Intent, LikeShown, MoreLike, NotShown,
                                    clean_message, is_vague, negated_term, parse_intent, shown_rank)
from mediarec.errors import MediarecError
from mediarec.infra.atomic import atomic_write_text
from mediarec.infra.redact import redact
from mediarec.rank.request import Constraints, parse_request
from mediarec.recommendation import RecommendationResult

if TYPE_CHECKING:
    from mediarec.recommender import Recommender
    from mediarec.rank.profile import InterestProfile

SESSION_FORMAT = 1
ReplyKind = Literal["recommendations", "ack", "clarify", "error", "info"]


class SessionReply(BaseModel):
    """What the session answers to one message."""

    kind: ReplyKind
    text: str
    result: RecommendationResult | None = None
    options: list[str] = Field(default_factory=list)


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    time: float = 0.0


class SessionState(BaseModel):
    """The saved form of a session (what ``save`` writes and ``load`` reads)."""

    format: int = SESSION_FORMAT
    catalog: str
    user: str | None = None
    interactions: list[Interaction] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)
    disliked: list[str] = Field(default_factory=list)
    bans: list[str] = Field(default_factory=list)  # the excluded genres and tags (what older sessions kept)
    constraints: Constraints | None = None
    turns: list[Turn] = Field(default_factory=list)
    last_request: str | None = None
    shown: list[str] = Field(default_factory=list)
    last_mentioned: str | None = None


class _Ambiguous(Exception):
    def __init__(self, ref: str, items: list[Item]):
        super().__init__(ref)
        self.ref, self.items = ref, items


class _NotFound(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ChatSession:
    """One user's conversation: their interactions (starting from their catalog history if a user is
    given), the turns, excluded items, the standing constraints and the last list shown.

    ``use_profile``: mix the interest profile of the current history into every retrieval (None:
    the recommender's ``use_profile``); a vague request always retrieves through the profile.
    """

    def __init__(self, recommender: "Recommender", user: str | None = None, k: int = 10,
                 session_user: str = "me", use_profile: bool | None = None):
        self.recommender = recommender
        self.use_profile = bool(getattr(recommender, "use_profile", False) if use_profile is None else use_profile)
        self.catalog = recommender.catalog
        self.user = user
        self.k = k
        self.session_user = str(user) if user is not None else session_user
        self.interactions: list[Interaction] = []
        self.turns: list[Turn] = []
        self.excluded: list[str] = []  # ids the user said no to ("not 3", "didn't like it")
        self.disliked: list[str] = []  # the subset that was a dislike of something they consumed
        self.constraints = Constraints()  # the standing request: every list honours it until lifted
        self.last_request: str | None = None
        self.last_result: RecommendationResult | None = None
        self.shown: list[str] = []  # ids of the last list, rank order ("2" means shown[1])
        self.last_mentioned: str | None = None
        self._pending: tuple[str, list[str], dict[str, Any]] | None = None  # (action, option ids, extra)
        self._profile_cache: tuple[tuple[str, ...], "InterestProfile"] | None = None
        self._epoch = 0
        self._tls = threading.local()  # the epoch an answer in progress belongs to (per thread)
        self._lock = threading.RLock()
        self.on_event: Any = None  # called with each like, dislike and watch the user gives
        self.reset()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the start: the user's catalog history (or nothing), no exclusions, no turns."""
        with self._lock:
            self.interactions = list(self.catalog.history(self.user)) if self.user is not None else []
            self.turns, self.excluded, self.disliked, self.constraints = [], [], [], Constraints()
            self.last_request, self.last_result, self.shown = None, None, []
            self.last_mentioned, self._pending, self._profile_cache = None, None, None
            self._epoch += 1

    def history(self) -> list[Interaction]:
        """What retrieval and the LLM see: the interactions, minus anything disliked, oldest first."""
        bad = set(self.disliked)
        return [x for x in self.interactions if x.item not in bad and x.event != "dislike"]

    def history_pairs(self) -> list[tuple[Item, Interaction]]:
        """The history as (item, interaction) pairs, what profiles and prompts are built from."""
        return self.catalog.history_pairs(x for x in self.history() if x.item in self.catalog.items)

    @property
    def bans(self) -> list[str]:
        """The genres and tags the standing constraints leave out, lower case."""
        return [x.lower() for x in self.constraints.exclude_genres + self.constraints.exclude_tags]

    def banned_ids(self, constraints: Constraints | None = None) -> set[str]:
        """Items with a genre or tag the standing constraints leave out: excluded by id as well, so
        that no fallback without the request's filters brings them back."""
        c = self.constraints if constraints is None else constraints
        if not (c.exclude_genres or c.exclude_tags):
            return set()
        only = Constraints(exclude_genres=c.exclude_genres, exclude_tags=c.exclude_tags)
        return {it.id for it in self.catalog.items.values() if not only.allows(it)}

    def constraint_lines(self) -> list[str]:
        """The standing constraints, one line each in words (``:constraints``)."""
        return standing.lines(self.constraints)

    def clear(self, what: str = "") -> str:
        """Lift one standing constraint ("horror", "years", "kind", "like") or, without ``what``, all.

        Raises MediarecError when nothing standing matches ``what``."""
        with self._lock:
            lifted_c, lifted = standing.lift(self.constraints, what, self.catalog)
            if not lifted:
                active = "; ".join(self.constraint_lines())
                if not active:
                    raise MediarecError("No constraints to lift.")
                raise MediarecError(f"No constraint {what!r} to lift; standing: {active}.")
            if standing.has_subject(self.constraints) and not standing.has_subject(lifted_c):
                self.last_request = None  # what the request was about is lifted with it
            self.constraints = lifted_c
        return "Lifted: " + "; ".join(lifted) + "."

    def exclusions(self, constraints: Constraints | None = None) -> set[str]:
        """Every id the next answer must leave out (explicit, disliked, of an excluded genre or tag)."""
        return set(self.excluded) | set(self.disliked) | self.banned_ids(constraints)

    @property
    def epoch(self) -> int:
        """Changes on :meth:`cancel`, :meth:`reset` and load; an answer begun in another epoch is dropped."""
        return self._epoch

    def cancel(self) -> None:
        """Abandon the answer being computed: when it arrives it changes nothing."""
        with self._lock:
            self._epoch += 1

    # -- the conversation --------------------------------------------------------------------
    def send(self, text: str, *, epoch: int | None = None) -> SessionReply:
        """Interpret one message and answer it; user errors come back as kind "error", not raised.

        ``epoch`` (from :attr:`epoch`, read before handing the call to a worker thread) ties the
        answer to that moment: after a :meth:`cancel` the list it computes is not kept.
        """
        raw = text if isinstance(text, str) else str(text)
        msg = clean_message(raw)
        if not msg:
            return SessionReply(kind="error", text="Type a request (e.g. 'calm piano music for studying') "
                                                   "or feedback such as 'not 2', 'more like 1', 'no horror'.")
        self._tls.epoch = self._epoch if epoch is None else epoch
        with self._lock:
            self.turns.append(Turn(role="user", text=redact(raw.strip())[:2000], time=time.time()))
        try:
            reply = self._interpret(msg)
        except MediarecError as e:
            reply = SessionReply(kind="error", text=str(e))
        finally:
            self._tls.epoch = None
        with self._lock:
            self.turns.append(Turn(role="assistant", text=redact(self._turn_text(reply))[:2000], time=time.time()))
        return reply

    def _interpret(self, msg: str) -> SessionReply:
        pending, self._pending = self._pending, None
        if pending is not None:
            chosen = self._choose(pending, msg)
            if chosen is not None:
                return chosen
        return self._apply(parse_intent(msg))

    def _apply(self, intent: Intent) -> SessionReply:
        """What an intent does to this session; one that does not fit the catalog is read as a request."""
        match intent:
            case Again():
                if self.last_request is None and not self.shown:
                    return SessionReply(kind="error", text="Nothing to repeat yet: ask for something first.")
                return self._ask(self.last_request)
            case MoreLike(ranks=ranks):
                return self._more_like(ranks)
            case NotShown(ranks=ranks):
                return self._not_shown(ranks)
            case Feedback(ref=ref, liked=False):
                if not self._looks_like_ref(ref.lower()):  # "I hate horror": a genre or tag to leave out
                    turn = parse_request(f"no {ref}", self.catalog)
                    if turn.exclude_genres or turn.exclude_tags:
                        return self._request(intent.text, turn.model_copy(update={"request": intent.text}))
                return self.feedback(ref, False)
            case Feedback(ref=ref, liked=True) if self._looks_like_ref(ref.lower()):
                return self.feedback(ref, True)
            case Consumed():
                return self._consumed(intent)
            case LikeShown():
                return self._like_shown(intent)
        return self._request(intent.text)

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

    # -- asking ------------------------------------------------------------------------------
    def recommend(self, request: str | None = None) -> RecommendationResult:
        """A list for the current history, exclusions, standing constraints and (optional) request,
        without a turn (the request does not stand afterwards)."""
        c = self.constraints
        if request is not None:
            turn = self._read(request)
            if turn.is_hard or turn.reference or not is_vague(request):
                c = standing.merge(c, turn)
        return self._run(request, c)[0]

    def _read(self, text: str) -> Constraints:
        """A request read by the recommender's parser (the rules, or the LLM where configured)."""
        turn, _ = self.recommender._read_request(text, bool(self.history()))
        return turn if turn is not None else Constraints(request=text)

    def _request(self, text: str, turn: Constraints | None = None) -> SessionReply:
        """A request: read, merged into the standing constraints, and answered under them all."""
        turn = self._read(text) if turn is None else turn
        if not (turn.is_hard or turn.reference) and is_vague(text):
            return self._ask(text)  # "what next?": the standing constraints as they are
        term = negated_term(text)
        if term is not None and not (turn.exclude_genres or turn.exclude_tags) and \
                (len(term.split()) == 1 or turn.unmet):
            return SessionReply(kind="error", text=f"No genre or tag {term!r} to leave out in this catalog; "
                                                   f"try one such as {', '.join(self._some_genres(6))}.")
        merged = standing.merge(self.constraints, turn)
        if standing.has_subject(turn) or self.last_request is None:
            query = text
        else:  # only a filter ("from the 90s"): the last request, under the new constraints
            query = self.last_request
        only_exclusions = (turn.exclude_genres or turn.exclude_tags) and not (
            turn.genres or turn.kinds or turn.year_min is not None or turn.year_max is not None)
        if only_exclusions and not standing.has_subject(turn) and self.last_request is None and not self.shown:
            with self._lock:
                self.constraints = merged
            n = len(self.banned_ids())
            return SessionReply(kind="ack", text=f"From now on: {'; '.join(self.constraint_lines())} "
                                                 f"({n} items left out). ':constraints' lists them, ':clear' lifts them.")
        return self._ask(query, constraints=merged)

    def _like_shown(self, intent: LikeShown) -> SessionReply:
        """"like 2 but shorter": item 2 of the last list as the reference, the rest read as a request."""
        if not 1 <= intent.rank <= len(self.shown) and parse_request(intent.text, self.catalog).reference:
            return self._request(intent.text)  # "like 300 but ...": a title after all
        try:
            item = self._shown_item(intent.rank)
        except _NotFound as e:
            return SessionReply(kind="error", text=e.message)
        text = f"like {item.label} {intent.rest}"  # what the LLM reads: the title, never a rank
        turn = self._read(intent.rest).model_copy(update={"reference": item.id, "reference_title": item.label,
                                                          "request": text})
        self.last_mentioned = item.id
        return self._request(text, turn)

    def _query_for(self, request: str | None, constraints: Constraints) -> tuple[str | None, str | None]:
        """(query for retrieval, note) for a request; a vague one uses the interest profile."""
        if request is None:
            return None, None
        if is_vague(request):
            if not self.history() and (constraints.is_hard or constraints.reference):
                return request, None  # "an album" with nothing else: the filters do the work
            if not self.history():
                raise MediarecError("Tell me a bit more: a title you liked ('I watched Heat') or what you are "
                                    "in the mood for ('calm piano music for studying').")
            from mediarec.rank.profile import profile_query

            return profile_query(self.profile()) or None, "a vague request: used your interest profile"
        return request, None

    def _run(self, request: str | None, constraints: Constraints | None = None
             ) -> tuple[RecommendationResult, str | None]:
        c = self.constraints if constraints is None else constraints
        query, note = self._query_for(request, c)
        hist = self.history()
        if not hist and not query and not c.reference:
            raise MediarecError("Nothing to go on yet: ask for something ('tense 80s sci-fi') or tell me "
                                "what you watched or listened to ('I watched Heat').")
        profile = self.profile() if self.use_profile and hist and not note else None
        # the session reads requests itself (a rank such as "like 2" means nothing to the recommender)
        result = self.recommender.recommend(history=hist, query=query, exclude=self.exclusions(c), k=self.k,
                                            profile=profile, read_request=note is None, constraints=c)
        if request is not None and query != request:
            result.request = request
        if note:
            result.notes.append(note)
        return result, note

    def _ask(self, request: str | None, prefix: str = "", constraints: Constraints | None = None) -> SessionReply:
        epoch = getattr(self._tls, "epoch", None)
        if epoch is None:
            epoch = self._epoch
        if epoch != self._epoch:
            return SessionReply(kind="info", text="cancelled")
        result, _ = self._run(request, constraints)
        with self._lock:
            if epoch != self._epoch:
                return SessionReply(kind="info", text="cancelled")
            self.last_request = request
            if constraints is not None:
                self.constraints = constraints
            self.last_result = result
            self.shown = [r.item.id for r in result.items]
        if not result.items:
            return SessionReply(kind="info", text=(prefix + " " if prefix else "") +
                                "Nothing left to recommend: everything that matches is in your history or "
                                "excluded (':reset' starts over).", result=result)
        lines = [f"{r.rank}. {r.item.label}" for r in result.items]
        held = standing.lines(self.constraints, subject=False)
        head = prefix + (" " if prefix else "") + ("Here is what I found" + (f" for {request!r}" if request else "")
                                                    + (f" ({'; '.join(held)})" if held else "") + ":")
        return SessionReply(kind="recommendations", text=head + "\n" + "\n".join(lines), result=result)

    def _reask_or_ack(self, text: str) -> SessionReply:
        """After feedback: show the refreshed list when there was one, else acknowledge."""
        if self.last_request is not None or self.shown:
            try:
                return self._ask(self.last_request, prefix=text)
            except MediarecError as e:
                return SessionReply(kind="ack", text=f"{text} ({e})")
        return SessionReply(kind="ack", text=text)

    # -- references --------------------------------------------------------------------------
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

    # -- feedback ----------------------------------------------------------------------------
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
        """Hand a like, dislike or watch to ``on_event`` (``chat --save-feedback``: catalog/feedback.py)."""
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
        return SessionReply(kind="ack", text=f"Noted: not {item.label}. It won't be recommended or used as "
                                             "a guide to your taste.")

    # -- profile and explanations ----------------------------------------------------------------
    def profile(self) -> "InterestProfile":
        """The interest profile of the current history (built once per history)."""
        from mediarec.rank.profile import build_profile

        pairs = self.history_pairs()
        key = tuple(it.id for it, _ in pairs)
        if self._profile_cache is not None and self._profile_cache[0] == key:
            return self._profile_cache[1]
        prof = build_profile(self.recommender.llm, self.recommender.prompts, pairs)
        self._profile_cache = (key, prof)
        return prof

    def explain(self, n: int, detail: bool = True) -> str:
        """A longer explanation of shown item N (the LLM's when there is one, else from the data)."""
        text = explain_item(self.recommender, self.resolve_ref(int(n)), self.history_pairs(), self.last_request,
                            self.last_result, detail=detail)
        read = self.last_result.constraints if self.last_result is not None else None
        return text + (f"\nYour request was read as: {read.describe()}." if read is not None else "")

    # -- saving ------------------------------------------------------------------------------
    def state(self) -> SessionState:
        return SessionState(catalog=self.catalog.name, user=self.user, interactions=list(self.interactions),
                            excluded=list(self.excluded), disliked=list(self.disliked), bans=list(self.bans),
                            constraints=self.constraints.model_copy(),
                            turns=[t.model_copy(update={"text": redact(t.text)}) for t in self.turns],
                            last_request=redact(self.last_request) if self.last_request else None,
                            shown=list(self.shown), last_mentioned=self.last_mentioned)

    def save(self, path: str | Path) -> Path:
        """Interactions, conversation and exclusions as JSON, mode 0o600, written atomically."""
        text = self.state().model_dump_json(indent=2)
        return atomic_write_text(path, redact(text), private=True)

    @classmethod
    def load(cls, path: str | Path, recommender: "Recommender", k: int = 10) -> "ChatSession":
        """A session saved by :meth:`save`; items the catalog no longer has are dropped."""
        p = Path(path).expanduser()
        try:
            raw = p.read_text(encoding="utf-8")
        except OSError as e:
            raise MediarecError(f"cannot read session file {p}: {e.strerror or e}") from None
        try:
            st = SessionState.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as e:
            first = str(e).splitlines()[0][:200]
            raise MediarecError(f"{p} is not a mediarec session file ({first})") from None
        if st.format > SESSION_FORMAT:
            raise MediarecError(f"{p} was written by a newer mediarec (format {st.format})")
        if st.catalog != recommender.catalog.name:
            raise MediarecError(f"{p} is a session of catalog {st.catalog!r}, not {recommender.catalog.name!r}")
        s = cls(recommender, user=None, k=k)
        s.restore(st)
        return s

    def restore(self, st: SessionState) -> None:
        known = self.catalog.items
        with self._lock:
            self.user = st.user if st.user is None or st.user in self.catalog.by_user else None
            if st.user is not None:
                self.session_user = st.user
            self.interactions = [x for x in st.interactions if x.item in known]
            self.excluded = [i for i in st.excluded if i in known]
            self.disliked = [i for i in st.disliked if i in known]
            self.constraints = st.constraints if st.constraints is not None else self._from_bans(st.bans)
            self.turns = list(st.turns)
            self.last_request = st.last_request
            self.shown = list(st.shown) if all(i in known for i in st.shown) else []
            self.last_mentioned = st.last_mentioned if st.last_mentioned in known else None
            self.last_result, self._pending, self._profile_cache = None, None, None
            self._epoch += 1

    def _from_bans(self, bans: list[str]) -> Constraints:
        """The constraints of a session saved before they existed: its genre and tag bans."""
        c = Constraints()
        for term in bans:
            c = standing.merge(c, parse_request(f"no {term}", self.catalog))
        return c

    # -- helpers -----------------------------------------------------------------------------
    def _some_genres(self, n: int) -> list[str]:
        from collections import Counter

        c = Counter(g for it in self.catalog.items.values() for g in it.genres)
        return [g.lower() for g, _ in c.most_common(n)]

    @staticmethod
    def _turn_text(reply: SessionReply) -> str:
        return f"[{reply.kind}] {reply.text}"

