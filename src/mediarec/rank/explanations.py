"""Every recommended item gets a reason that passes the checker: the LLM's when it passes, else a
template written from the evidence (so ``--llm none`` explains too).

:func:`explain_result` is the one step ``Recommender.recommend`` calls on its result: it computes
each item's :class:`~mediarec.rank.evidence.Evidence`, asks the LLM (when there is one and
``explain``) for the top ``explain_top`` items with the evidence in the prompt, checks each
reason (one more try for a failing one) and fills in template reasons for the rest.
``result.explanations`` records what happened, which the evaluation's explanation metric sums.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

from mediarec.rank.checker import EMPTY, ReasonChecker, template_reason
from mediarec.rank.evidence import Evidence, EvidenceBuilder, split_history
from mediarec.rank.reranker import ExplainLog

if TYPE_CHECKING:
    from mediarec.catalog.model import Catalog, Interaction, Item
    from mediarec.index.store import CatalogIndex
    from mediarec.rank.reranker import Reranker
    from mediarec.rank.result import RecommendationResult

#: A history as (item, the interaction with it, None for a bare title) pairs, oldest first.
HistoryPairs = list[tuple["Item", "Interaction | None"]]


class Served(Protocol):
    """What explaining needs of the pipeline (a :class:`mediarec.recommender.Recommender`)."""

    catalog: "Catalog"
    index: "CatalogIndex"
    reranker: "Reranker | None"

def tools_for(recommender: "Served") -> tuple[EvidenceBuilder, ReasonChecker]:
    """One builder and checker per served index (their catalog-wide tables are built once), kept
    in the index snapshot's ``derived`` tables so that they go with it."""
    index = recommender.index
    memo = getattr(index, "derived", None)
    got = memo.get("explain_tools") if memo is not None else None
    if got is None or got[0].catalog is not recommender.catalog:
        got = (EvidenceBuilder(recommender.catalog, index), ReasonChecker(recommender.catalog))
        if memo is not None:
            memo["explain_tools"] = got
    return got


def facts_key(item_id: str, ev: "Evidence") -> tuple:
    """What one item's reason prompt says about it (``reason_facts`` and ``reason_form`` in
    ``_macros.j2``: the liked title (co-liked or compared), the genre shown, the form, whether it
    matches the request; the era is the item's own): two turns with the same key ask the LLM the
    same question about the item."""
    liked = ev.cowatched or (ev.like if not ev.asked else None)
    genres = list(ev.asked) if ev.asked else ev.like_genres if ev.like is not None and ev.cowatched is None \
        and ev.like_genres else ev.shared_genres + ev.shared_tags
    form = ("asked-" if ev.asked else "") + ("co-liked" if ev.cowatched else "plain" if ev.asked else
                                             "like-era" if ev.like and ev.like_era else "like" if ev.like else "plain")
    return (item_id, liked.id if liked else None, genres[0].lower() if genres else None, form,
            "request" in ev.elements())


class ReasonMemo(dict):
    """LLM reasons already written in a session (a chat), by :func:`facts_key`: a later list that
    shows the same item with the same facts takes its reason from here, checked again against the
    new evidence, instead of asking the LLM (follow-up turns repeat most items). Bounded: the
    oldest entries go first."""

    MAX = 500

    def __setitem__(self, key, value) -> None:
        if key not in self and len(self) >= self.MAX:
            del self[next(iter(self))]
        super().__setitem__(key, value)


def _nearest_reference(item: Item, refs: list[Item]) -> Item:
    """Of the titles a request compares to ("like Alien and Heat"), the first sharing a genre with
    ``item`` (a crime film is compared with Heat, not Alien); the first named otherwise."""
    own = {g.lower() for g in item.genres}
    return next((r for r in refs if r.id != item.id and own & {g.lower() for g in r.genres}), refs[0])


def explain_result(recommender: "Served", result: "RecommendationResult", pairs: "HistoryPairs",
                   request: str | None, explain: bool = True,
                   on_update: Callable[["RecommendationResult"], None] | None = None,
                   memo: ReasonMemo | None = None) -> None:
    """Evidence, a checked reason and its source for every item of ``result`` (in place);
    ``on_update`` gets the list again each time a streamed LLM reason passes the checker.
    ``memo``: reasons written earlier in the session, reused where the facts are unchanged (and
    the reasons written now are added to it)."""
    if not result.items:
        return
    builder, checker = tools_for(recommender)
    t0 = time.perf_counter()
    # "It matches your request" is measured against what the request was read as searching for
    # (its soft words and tags), never the raw words: "not another superhero movie" is close to
    # superhero films in text, and a request read only as filters or exclusions searches nothing.
    read = result.constraints
    searched = read.text_query() if read is not None and hasattr(read, "text_query") else request
    evidence = builder.build([r.item for r in result.items], pairs, searched)
    asked = list(getattr(result.constraints, "genres", None) or [])  # the genres the request asked for
    years = (getattr(read, "year_min", None), getattr(read, "year_max", None))  # and the years
    people = list(getattr(read, "people", None) or [])  # and who made it
    if asked or years != (None, None) or people:
        evidence = {r.item.id: evidence[r.item.id].with_request(r.item, asked, years, people) for r in result.items}
    items = recommender.catalog.items
    refs = [items[i] for i in [getattr(read, "reference", None), *getattr(read, "more_references", ())]
            if i and i in items]
    if refs:  # "something like Kid A": what each item shares with Kid A may be said
        evidence = {r.item.id: evidence[r.item.id].with_reference(r.item, _nearest_reference(r.item, refs))
                    for r in result.items}
    result.seconds["evidence"] = time.perf_counter() - t0
    history, _ = split_history(pairs)  # what the checker holds "you liked" to: liked items only
    passed: dict[str, str] = {}
    summary: dict[str, Any] = {"asked": 0}
    reranker = recommender.reranker
    if reranker is not None and explain:
        top = result.items[: reranker.settings.explain_top]
        by_id = {c.item.id: c for c in result.candidates}
        chosen = [by_id[r.item.id] for r in top if r.item.id in by_id]
        given = {r.item.id: r.reason for r in top if r.reason}  # the explained list's own reasons
        hist = reranker.settings.history(pairs)
        others = [c.item for c in result.candidates]
        each = reranker.uses_each()
        on_pass = _show_each(result, on_update) if on_update is not None and each else None
        reused: dict[str, str] = {}
        if memo is not None and not given:
            for c in chosen:
                old = memo.get(facts_key(c.item.id, evidence[c.item.id]))
                if old and checker.check(old, c.item, evidence[c.item.id], history, others).passed:
                    reused[c.item.id] = old
                    if on_pass is not None:
                        on_pass(c.item.id, old)
            chosen = [c for c in chosen if c.item.id not in reused]
        stream = ReasonStream(result, chosen, evidence, checker, history, others, on_update) \
            if on_update is not None and not given and not each else None  # given: the first call asks for fewer
        with reranker.llm.streaming(stream.feed) if stream is not None else contextlib.nullcontext():
            passed, log = reranker.checked_explain(hist, chosen, evidence, checker, history, others, request,
                                                   given=given, on_pass=on_pass) if chosen else ({}, ExplainLog())
        if memo is not None:
            for item_id, reason in passed.items():
                memo[facts_key(item_id, evidence[item_id])] = reason
        passed = {**reused, **passed}
        result.usage = result.usage.add(log.usage)
        result.seconds["explain"] = log.seconds
        result.stage_usage["explain"] = log.usage
        if log.calls:
            result.stages.append("explain")
        if log.error:
            result.notes.append(log.error)
        summary = {"asked": len(chosen), "reused": len(reused), "llm_passed": len(passed), "checks": len(log.checks),
                   "checks_passed": sum(c.passed for c in log.checks),
                   "first_try_passed": sum(c.passed for c, t in zip(log.checks, log.tries) if t == 1),
                   "trimmed": sum(c.passed and c.trimmed for c in log.checks),
                   "written": sum(c.problems != [EMPTY] for c in log.checks),  # non-empty LLM reasons
                   "foreign_titles": sum(len(c.foreign_titles) for c in log.checks),
                   "other_candidates": sum(len(c.other_candidates) for c in log.checks),
                   "problems": [p.split(":")[0] for c in log.checks for p in c.problems],
                   "calls": log.calls, "prompt_tokens": log.usage.prompt_tokens,
                   "completion_tokens": log.usage.completion_tokens, "seconds": log.seconds}
    for r in result.items:
        ev = evidence[r.item.id]
        r.evidence = ev
        if r.item.id in passed:
            r.reason, r.reason_source = passed[r.item.id], "llm"
        else:
            r.reason, r.reason_source = template_reason(ev, r.item), "template"
    summary["template"] = sum(r.reason_source == "template" for r in result.items)
    summary["items"] = len(result.items)
    result.explanations = summary


def _show_each(result: "RecommendationResult", on_update: Callable[["RecommendationResult"], None]):
    """For reasons written one per prompt: each passing reason, as it is written, joins a copy of
    the list for ``on_update``."""
    shown: dict[str, str] = {}

    def on_pass(item_id: str, reason: str) -> None:
        shown[item_id] = reason
        items = [r.model_copy(update={"reason": shown.get(r.item.id)}) for r in result.items]
        on_update(result.model_copy(update={"items": items, "pending": "reasons"}))

    return on_pass


_ENTRY = re.compile(r'\{\s*"id"\s*:\s*"([^"\\]{1,200})"\s*,\s*"reason"\s*:\s*"((?:[^"\\]|\\.)*)"\s*\}')


class ReasonStream:
    """Reasons shown as the first explain call writes them: each complete ``{"id", "reason"}`` entry
    of the answer so far that passes the same checker is put into a copy of the list for
    ``on_update``. Only the first call streams (its labels are ``chosen`` in order); the final
    result is still what :meth:`Reranker.checked_explain` decides, which checks the same way."""

    def __init__(self, result, chosen, evidence, checker, history, others, on_update):
        from mediarec.rank.prompts import labels as make_labels

        self.result, self.evidence, self.checker = result, evidence, checker
        self.history, self.others, self.on_update = history, others, on_update
        self.by_label = dict(zip(make_labels(len(chosen)), (c.item for c in chosen)))
        self.by_label.update({c.item.title.lower(): c.item for c in chosen})  # small models answer with titles
        self.reasons: dict[str, str] = {}
        self.seen: set[str] = set()
        self._text, self.calls = "", 0

    def feed(self, text: str) -> None:
        if not text.startswith(self._text):
            self.calls += 1  # a new call (a second try for failing reasons): not streamed
        self._text = text
        if self.calls:
            return
        changed = False
        for m in _ENTRY.finditer(text):
            ref = m.group(1).strip()
            item = self.by_label.get(ref) or self.by_label.get(ref.lower())
            if item is None or item.id in self.seen:
                continue
            self.seen.add(item.id)
            try:
                reason = " ".join(json.loads(f'"{m.group(2)}"').split())
            except ValueError:
                continue
            if self.checker.check(reason, item, self.evidence[item.id], self.history, self.others).passed:
                self.reasons[item.id] = reason
                changed = True
        if changed:
            items = [r.model_copy(update={"reason": self.reasons.get(r.item.id)}) for r in self.result.items]
            self.on_update(self.result.model_copy(update={"items": items, "pending": "reasons"}))
