"""Why an item of the last list was shown, at length (the chat's ``:why N``).

The reranker's LLM explains when there is one and its answer passes the reason checker
(:mod:`mediarec.rank.checker`); otherwise the explanation is built from the data: the genres and
tags the item shares with the history, the request, and how it was retrieved. Either way it ends
with the item's evidence, computed by the models (:mod:`mediarec.rank.evidence`), and the user
gets an answer, never an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from mediarec.catalog.model import Interaction, Item
from mediarec.rank.evidence import split_history
from mediarec.rank.result import RankedItem, RecommendationResult

if TYPE_CHECKING:
    from mediarec.recommender import Recommender


def explain_item(recommender: "Recommender", item: Item, history: Sequence[tuple[Item, Interaction]],
                 request: str | None, last: RecommendationResult | None, detail: bool = True) -> str:
    """The LLM's checked explanation of ``item`` for this history and request, else one from the
    data; then the evidence."""
    from mediarec.rank.explanations import tools_for

    ranked = next((r for r in (last.items if last else []) if r.item.id == item.id), None)
    builder, checker = tools_for(recommender)
    evidence = ranked.evidence if ranked is not None and ranked.evidence is not None else \
        builder.build([item], history, request)[item.id]
    text = _llm_explanation(recommender, item, history, request, last, ranked, detail, evidence, checker)
    if text is None:
        text = data_explanation(item, split_history(history)[0], request, ranked)  # liked items only
    return text + "\nEvidence (from the models):\n" + "\n".join(f"- {x}" for x in evidence.lines() or ["none"])


def _llm_explanation(recommender, item, history, request, last, ranked, detail, evidence, checker) -> str | None:
    """The LLM's explanation when there is an LLM and its answer passes the checker."""
    if recommender.reranker is not None:
        from mediarec.index.retriever import Candidate
        from mediarec.llm.base import LLMUnavailable
        from mediarec.rank.parse import RankingParseError

        cand = next((c for c in (last.candidates if last else []) if c.item.id == item.id), None) \
            or Candidate(item=item, score=ranked.score if ranked else 0.0)
        hist = recommender.reranker.settings.history(history)
        try:
            reasons, _ = recommender.reranker.explain(hist, [cand], request, detail=detail,
                                                      evidence={item.id: evidence})
            others = [c.item for c in (last.candidates if last else [])]
            if checker.check(reasons.get(item.id), item, evidence, split_history(history)[0], others).passed:
                return reasons[item.id]
        except (LLMUnavailable, RankingParseError, ValueError):
            pass
    return None


def data_explanation(item: Item, history: Sequence[Item], request: str | None, ranked: RankedItem | None) -> str:
    """An explanation from the data alone: what the item shares with the liked ``history``, and how it
    was found (with nothing liked, it says so rather than citing a history)."""
    g = {x.lower() for it in history for x in it.genres}
    t = {x.lower() for it in history for x in it.tags}
    shared_g = [x for x in item.genres if x.lower() in g]
    shared_t = [x for x in item.tags if x.lower() in t]
    close = [it.label for it in reversed(history)
             if set(map(str.lower, it.genres)) & set(map(str.lower, item.genres))][:3]
    parts = [f"{item.label} ({item.kind}"
             + (f"; {', '.join(item.genres)}" if item.genres else "") + ")."]
    if shared_g or shared_t:
        parts.append("It shares " + ", ".join(filter(None, [
            ("genres " + ", ".join(shared_g[:4])) if shared_g else "",
            ("tags " + ", ".join(shared_t[:5])) if shared_t else ""])) + " with items you liked"
                     + (f" (e.g. {'; '.join(close)})" if close else "") + ".")
    elif not history:
        parts.append("You have no liked items yet: it rests on the request and on what other users liked.")
    if request:
        parts.append(f"It was retrieved for your request {request!r}.")
    if ranked is not None:
        src = " and ".join(ranked.sources) if ranked.sources else "retrieval"
        parts.append(f"Found by {src} similarity, score {ranked.score:.3f}.")
        if ranked.reason:
            parts.append(ranked.reason)
    if item.description:
        parts.append(item.description[:300])
    return " ".join(parts)
