"""What a recommendation is: the ranked items and how they were obtained (the pipeline's output)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from mediarec.catalog.model import Item
from mediarec.index.retriever import Candidate
from mediarec.llm.base import Usage
from mediarec.rank.evidence import Evidence
from mediarec.rank.request import Constraints


class RankedItem(BaseModel):
    rank: int
    item: Item
    score: float
    reason: str | None = None
    retrieval_score: float  # the first stage's fused score
    learned_score: float | None = None  # the learned second stage's, when it ranked
    llm_score: float | None = None
    sources: tuple[str, ...] = ()
    evidence: Evidence | None = None  # what the models found (rank/evidence.py), never the LLM
    reason_source: Literal["llm", "template"] | None = None  # who wrote ``reason`` (both pass the checker)


class HistoryBasis(BaseModel):
    """What the history gave the list to go on (:func:`~mediarec.catalog.model.pair_liked`, the one definition of
    "liked"): so a reason can say honestly "unlike X, which you disliked" when nothing was liked."""

    liked: list[str] = []  # item ids the user liked (the lists are built towards them)
    disliked: list[str] = []  # item ids with a ``dislike`` (pushed away, never recommended back)
    low_rated: list[str] = []  # item ids rated below the user's own midpoint (pushed away, weakly)

    @property
    def only_negatives(self) -> bool:
        """Nothing liked, something disliked or rated low: the list is built *away* from those."""
        return not self.liked and bool(self.disliked or self.low_rated)


class RecommendationResult(BaseModel):
    """What ``recommend`` returns, also printed as JSON by ``mediarec recommend --json``."""

    items: list[RankedItem]
    candidates: list[Candidate]
    stages: list[str]
    llm: str | None = None
    mode: str | None = None
    request: str | None = None
    degraded: bool = False
    degraded_reason: str | None = None
    repaired: bool = False
    attempts: int = 0
    notes: list[str] = []
    usage: Usage = Usage()
    seconds: dict[str, float] = {}  # per stage (retrieval, learned, llm, evidence, explain) and total
    stage_usage: dict[str, Usage] = {}  # the LLM's tokens per stage (llm: scoring or the list, explain)
    explanations: dict[str, Any] = {}  # how the reasons were obtained (rank/explanations.py)
    settings: dict[str, Any] = {}  # what ranked, and where each setting came from (defaults, validation)
    constraints: Constraints | None = None  # how the request was read (None without a request)
    pending: str | None = None  # in a provisional result (``recommend(on_update=...)``): what is still running
    basis: HistoryBasis = HistoryBasis()  # what the history held: liked, disliked and low-rated item ids

    def timing_lines(self) -> list[str]:
        """Where this list's time went, one stage a line (chat's ``:why``): seconds, and the LLM's
        tokens (evaluated, reused from an earlier prompt's prefix, generated) where it ran."""
        lines = []
        for stage, sec in self.seconds.items():
            if stage == "total":
                continue
            u = self.stage_usage.get(stage)
            tokens = ""
            if u is not None and (u.prompt_tokens or u.completion_tokens or u.reused_tokens):
                tokens = f" ({u.prompt_tokens} prompt tokens evaluated, {u.reused_tokens} reused, " \
                         f"{u.completion_tokens} generated{', cached' if u.cached else ''})"
            lines.append(f"{STAGE_NAMES.get(stage, stage)}: {sec:.2f} s{tokens}")
        if "total" in self.seconds:
            lines.append(f"total: {self.seconds['total']:.2f} s")
        return lines


STAGE_NAMES = {"llm": "LLM ranking", "explain": "LLM reasons", "evidence": "evidence", "learned": "learned stage",
               "retrieval": "retrieval"}
