"""A conversation with the recommender: requests, feedback, and a history that moves with it.

```python
session = ChatSession(mediarec.from_dataset("demo", llm="none"), user="alice")
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

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mediarec.catalog.model import Interaction, Item
from mediarec.chat.explain import explain_item
from mediarec.chat import standing
from mediarec.chat.feedback import FeedbackActions
from mediarec.chat.intents import (Again, Consumed, Feedback, Intent, LikeShown, MoreLike, NotShown, Why, clean_message, is_vague, replay_request,
                                    negated_term, parse_intent)
from mediarec.chat.references import References, _NotFound
from mediarec.chat.state import SESSION_FORMAT, ReplyKind, SessionReply, SessionState, Turn, read_state
from mediarec.errors import MediarecError
from mediarec.infra.atomic import atomic_write_text
from mediarec.infra.redact import redact
from mediarec.rank.explanations import ReasonMemo
from mediarec.rank.request import Constraints, parse_request
from mediarec.rank.result import RecommendationResult

if TYPE_CHECKING:
    from mediarec.recommender import Recommender
    from mediarec.rank.profile import InterestProfile

__all__ = ["ChatSession", "SessionReply", "SessionState", "Turn", "ReplyKind", "SESSION_FORMAT"]


class ChatSession(References, FeedbackActions):
    """One user's conversation: their interactions (starting from their catalog history if a user is
    given), the turns, excluded items, the standing constraints and the last list shown.
    Resolving references (:mod:`~mediarec.chat.references`) and applying feedback
    (:mod:`~mediarec.chat.feedback`) are its parts in their own modules.

    ``use_profile``: mix the interest profile of the current history into every retrieval (None:
    the recommender's ``use_profile``); a vague request always retrieves through the profile.
    """

    def __init__(self, recommender: "Recommender", user: str | None = None, k: int = 10,
                 session_user: str = "me", use_profile: bool | None = None):
        self.recommender = _stepped(recommender)
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
        #: Called with each provisional list of an answer in progress (see ``Recommender.recommend``).
        self.on_update: Callable[[RecommendationResult], None] | None = None
        self.on_event: Any = None  # called with each like, dislike and watch the user gives
        #: Whether lists may bring back what the user already liked (":seen on|off|auto"); None follows
        #: the recommender (the catalog's repeat policy or the command's --include-seen).
        self.include_seen: bool | None = None
        self.reset()

    # -- state -----------------------------------------------------------------------------
    def reset(self) -> None:
        """Back to the start: the user's catalog history (or nothing), no exclusions, no turns."""
        with self._lock:
            self.interactions = list(self.catalog.history(self.user)) if self.user is not None else []
            self.turns, self.excluded, self.disliked, self.constraints = [], [], [], Constraints()
            self.last_request, self.last_result, self.shown = None, None, []
            self.last_mentioned, self._pending, self._profile_cache = None, None, None
            self.reasons = ReasonMemo()  # LLM reasons written in this session, reused when the facts hold
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
        only = c.exclusions_only()
        if not only.is_hard:
            return set()
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
            case Why(rank=rank):
                if not self.shown:
                    return SessionReply(kind="error", text="No list yet: ask for something first, then 'why 2'.")
                if not 1 <= rank <= len(self.shown):
                    return SessionReply(kind="error", text=f"The list has items 1 to {len(self.shown)}.")
                item = self.catalog.items[self.shown[rank - 1]]
                return SessionReply(kind="info", text=f"{rank}. {item.label}\n{self.explain(rank)}")  # as :why N
        return self._request(intent.text)

    # -- asking ------------------------------------------------------------------------------
    def recommend(self, request: str | None = None) -> RecommendationResult:
        """A list for the current history, exclusions, standing constraints and (optional) request,
        without a turn (the request does not stand afterwards)."""
        c = self.constraints
        if request is not None:
            turn = self._read(request)
            if turn.is_hard or turn.reference or not is_vague(request):
                c = standing.merge(c, turn, self.catalog)
        return self._run(request, c)[0]

    def _read(self, text: str, anchors: list[Item] | None = None, anchor_name: str | None = None) -> Constraints:
        """A request read by the recommender's parser (the rules, or the LLM where configured).
        Relative words ("older", "something else") compare to the list the user is looking at
        (else to the liked history)."""
        if anchors is None:
            anchors = [self.catalog.items[i] for i in self.shown if i in self.catalog.items]
            anchor_name = "the list shown" if anchors else "your history"
            if not anchors:
                anchors = [it for it, _ in self.history_pairs()]
        turn, _ = self.recommender._read_request(text, bool(self.history()), anchors, anchor_name or "the list")
        return turn if turn is not None else Constraints(request=text)

    def set_include_seen(self, value: bool | None) -> str:
        """Replays for every later list: True allows liked items to come back, False never, None as
        the catalog's policy says."""
        with self._lock:
            self.include_seen = value
        if value is None:
            allowed = bool(getattr(self.recommender, "include_seen", False))
            return f"Replays as this catalog does: {'allowed' if allowed else 'not shown'} (':seen on' or ':seen off' to choose)."
        return ("Replays allowed: lists may bring back what you liked before." if value else
                "No replays: lists show only what you have not consumed yet.")

    def _request(self, text: str, turn: Constraints | None = None) -> SessionReply:
        """A request: read, merged into the standing constraints, and answered under them all.
        "something to rewatch" allows replays for this answer only."""
        if turn is None:
            replay, rest = replay_request(text)
            if replay:
                return self._replay_request(text, rest)
        turn = self._read(text) if turn is None else turn
        if not (turn.is_hard or turn.reference) and is_vague(text):
            return self._ask(text)  # "what next?": the standing constraints as they are
        term = negated_term(text)
        if term is not None and not turn.exclusions_only().is_hard and \
                (len(term.split()) == 1 or turn.unmet):
            return SessionReply(kind="error", text=f"No genre or tag {term!r} to leave out in this catalog; "
                                                   f"try one such as {', '.join(self._some_genres(6))}.")
        merged = standing.merge(self.constraints, turn, self.catalog)
        if standing.has_subject(turn) or self.last_request is None or (turn.unread and turn.is_empty and not turn.applied):
            query = text  # a new subject, or words not understood at all (shown back; the history leads)
        else:  # only a filter ("from the 90s"): the last request, under the new constraints
            query = self.last_request
        only_exclusions = turn.exclusions_only().is_hard and not turn.applied and not (
            turn.genres or turn.kinds or turn.year_min is not None or turn.year_max is not None)
        if only_exclusions and not standing.has_subject(turn) and self.last_request is None and not self.shown:
            with self._lock:
                self.constraints = merged
            n = len(self.banned_ids())
            return SessionReply(kind="ack", text=f"From now on: {'; '.join(self.constraint_lines())} "
                                                 f"({n} items left out). ':constraints' lists them, ':clear' lifts them.")
        return self._ask(query, constraints=merged, heading=text)

    def _replay_request(self, text: str, rest: str) -> SessionReply:
        """"a comedy I have seen before": the rest read as any request, answered from what the user
        liked before (replays only, this answer only)."""
        from mediarec.rank.evidence import split_history

        liked = {it.id for it in split_history(self.history_pairs())[0]}  # the one rule, as reasons read it
        if not liked:
            return SessionReply(kind="info", text="Nothing to replay yet: you have not liked anything here. "
                                                  "Tell me what you enjoyed ('I watched Heat and loved it').")
        self._tls.include_seen = True
        self._tls.only = liked
        try:
            reply = self._request(rest, self._read(rest)) if not is_vague(rest) else self._ask(None, heading=text)
        finally:
            self._tls.include_seen = self._tls.only = None
        nothing = reply.result is not None and (not reply.result.items or any(
            n.startswith("nothing left satisfies") for n in reply.result.notes))
        if reply.kind in ("info", "recommendations") and nothing:
            return SessionReply(kind="info", text=f"Nothing you liked before matches {rest!r}.")
        if reply.kind == "recommendations":
            reply = reply.model_copy(update={"text": reply.text.replace(repr(rest), repr(text), 1)})
        return reply

    def _like_shown(self, intent: LikeShown) -> SessionReply:
        """"like 2 but shorter": item 2 of the last list as the reference, the rest read as a request."""
        if not 1 <= intent.rank <= len(self.shown) and parse_request(intent.text, self.catalog).reference:
            return self._request(intent.text)  # "like 300 but ...": a title after all
        try:
            item = self._shown_item(intent.rank)
        except _NotFound as e:
            return SessionReply(kind="error", text=e.message)
        text = f"like {item.label} {intent.rest}"  # what the LLM reads: the title, never a rank
        from mediarec.rank.request import keep_character, resolve_relative

        turn = self._read(intent.rest, [item], item.label)
        turn = turn.model_copy(update={"reference": item.id, "reference_title": item.label, "request": text,
                                       "more_references": [], "more_reference_titles": []})
        turn = keep_character(resolve_relative(turn, self.catalog, [item], item.label), self.catalog)
        self.last_mentioned = item.id
        return self._request(text, turn)

    def _query_for(self, request: str | None, constraints: Constraints) -> tuple[str | None, str | None]:
        """(query for retrieval, note) for a request; a vague one uses the interest profile."""
        if request is None:
            return None, None
        if is_vague(request):
            if not self.history() and (constraints.is_hard or constraints.reference):
                return request, None  # "an album" with nothing else: the filters do the work
            if not self.history() and self.disliked:
                return None, "a vague request: going by what you disliked"
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
        # The dislikes go along as dislike events: the recommender pushes away from their neighbours.
        hist = self.history() + [Interaction(user=self.session_user, item=i, event="dislike")
                                 for i in self.disliked if i in self.catalog.items]
        if not hist and not query and not c.reference:
            raise MediarecError("Nothing to go on yet: ask for something ('tense 80s sci-fi') or tell me "
                                "what you watched or listened to ('I watched Heat').")
        profile = self.profile() if self.use_profile and hist and not note else None
        # the session reads requests itself (a rank such as "like 2" means nothing to the recommender)
        seen, only = getattr(self._tls, "include_seen", None), getattr(self._tls, "only", None)
        exclude = self.exclusions(c)
        if only:  # replays only: everything else is left out
            exclude = list(exclude) + [i for i in self.catalog.items if i not in only]
        result = self.recommender.recommend(history=hist, query=query, exclude=exclude, k=self.k,
                                            profile=profile, read_request=note is None, constraints=c,
                                            on_update=self.on_update, reasons=self.reasons,
                                            include_seen=self.include_seen if seen is None else seen)
        if request is not None and query != request:
            result.request = request
        if note:
            result.notes.append(note)
        return result, note

    def _ask(self, request: str | None, prefix: str = "", constraints: Constraints | None = None,
             heading: str | None = None) -> SessionReply:
        """Answer under ``constraints``; the reply is headed by ``heading`` (what the user said this
        turn, else the request), the constraints held and the words not understood."""
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
        said = heading or request
        head = prefix + (" " if prefix else "") + ("Here is what I found" + (f" for {said!r}" if said else "")
                                                    + (f" ({'; '.join(held)})" if held else "") + ":")
        unread = self.constraints.unread if heading else []
        if unread:
            head = f"I did not understand {', '.join(repr(w) for w in unread)}.\n" + head
        unmet = self.constraints.unmet if heading else []
        if unmet:  # understood, but this catalogue lacks it ("Manchester by the Sea", lengths)
            head = f"Not in this catalogue: {'; '.join(unmet)}.\n" + head
        return SessionReply(kind="recommendations", text=head + "\n" + "\n".join(lines), result=result)

    def _reask_or_ack(self, text: str) -> SessionReply:
        """After feedback: show the refreshed list when there was one, else acknowledge."""
        if self.last_request is not None or self.shown:
            try:
                return self._ask(self.last_request, prefix=text)
            except MediarecError as e:
                return SessionReply(kind="ack", text=f"{text} ({e})")
        return SessionReply(kind="ack", text=text)

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
        last = self.last_result
        read = last.constraints if last is not None else None
        text += f"\nYour request was read as: {read.describe()}." if read is not None else ""
        timing = last.timing_lines() if last is not None else []
        return text + ("\nHow long the list took:\n" + "\n".join(f"- {x}" for x in timing) if timing else "")

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
        st = read_state(path, recommender.catalog.name)
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


CHAT_HISTORY_STEP = 5


def chat_history_step(max_history: int) -> int:
    """The chat's history step for a cut of ``max_history`` items: CHAT_HISTORY_STEP, but at most
    half the cut, so the prompt always shows more than half of it (a cut of 5 moves in steps of 2
    and shows 4 or 5 items)."""
    return max(1, min(CHAT_HISTORY_STEP, max_history // 2))


def _stepped(recommender: "Recommender") -> "Recommender":
    """The recommender a chat ranks with: the same one, but its prompts' history cut moves in steps
    (:func:`chat_history_step`), so a turn that adds a watched item reuses the evaluated history
    prefix of the turn before (:func:`mediarec.rank.prompts.cut_start`). The caller's recommender
    is unchanged."""
    import copy

    reranker = getattr(recommender, "reranker", None)
    if reranker is None or reranker.settings.history_step > 1:
        return recommender
    step = chat_history_step(reranker.settings.max_history)
    if step == 1:
        return recommender
    mine = copy.copy(recommender)
    mine.reranker = copy.copy(reranker)
    mine.reranker.settings = reranker.settings.model_copy(update={"history_step": step})
    return mine
