"""The recommender agent: catalog → index → candidates → prompt → LLM → parsed ranking → scores.

```python
from mediarec import Recommender
rec = Recommender.from_dataset("demo")
result = rec.recommend(history=["Alien (1979)", "Blade Runner (1982)"], k=10)
```
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from mediarec.catalog.model import Catalog, Interaction, Item
from mediarec.config import Settings, get_settings
from mediarec.errors import MediarecError
from mediarec.index.store import CatalogIndex, IndexSettings, open_index
from mediarec.llm import LLM, load_llm
from mediarec.recommendation import RankedItem, RecommendationResult
from mediarec.rank.prompts import PromptLibrary
from mediarec.rank.reranker import Reranker, RerankSettings
from mediarec.index.retriever import Candidate, FusionSettings, Retriever


class Recommender:
    """Retrieval plus an optional LLM ranking stage over one catalog."""

    def __init__(self, catalog: Catalog, index: CatalogIndex, llm: LLM | None = None,
                 fusion: FusionSettings | None = None, rerank: RerankSettings | None = None,
                 prompts: PromptLibrary | None = None, n_candidates: int = 20, use_profile: bool = False):
        self.catalog = catalog
        self.use_profile = use_profile  # chat sessions mix the interest profile into retrieval
        self.index = index
        self.retriever = Retriever(index, fusion)
        self.llm = llm
        self.prompts = prompts or PromptLibrary()
        self.reranker = Reranker(llm, self.prompts, rerank) if llm is not None else None
        self.n_candidates = n_candidates

    @classmethod
    def from_catalog(cls, catalog: Catalog, llm: str | None = None, chroma_url: str | None = None,
                     settings: Settings | None = None, progress: bool = False,
                     prompts_dir: str | Path | None = None, index_settings: IndexSettings | None = None,
                     **kw: Any) -> "Recommender":
        settings = settings or get_settings()
        backend = load_llm(llm if llm is not None else settings.llm, settings)
        index = open_index(catalog, settings, chroma_url=chroma_url, build=True, progress=progress,
                           index_settings=index_settings)
        return cls(catalog, index, backend, prompts=PromptLibrary(prompts_dir), **kw)

    @classmethod
    def from_dataset(cls, name: str = "demo", data_dir: str | Path | None = None, **kw: Any) -> "Recommender":
        from mediarec.catalog.datasets import load_dataset
        from mediarec.catalog.enrich import apply_summaries

        return cls.from_catalog(apply_summaries(load_dataset(name, data_dir)), **kw)

    # -- asking ---------------------------------------------------------------------------------
    def chat(self, user: str | None = None, k: int = 10, use_profile: bool | None = None):
        """A :class:`mediarec.chat.session.ChatSession`: requests and feedback that refine the history."""
        from mediarec.chat.session import ChatSession

        return ChatSession(self, user=user, k=k, use_profile=use_profile)

    def history_of(self, user: str) -> list[Interaction]:
        return self.catalog.history(user)

    def _history_pairs(self, history: Sequence[Interaction | Item | str]) -> list[tuple[Item, Interaction | None]]:
        pairs = []
        for h in history:
            if isinstance(h, Interaction):
                pairs.append((self.catalog.item(h.item), h))
            elif isinstance(h, Item):
                pairs.append((h, None))
            else:
                pairs.append((self.catalog.resolve(str(h)), None))
        return pairs

    def recommend(self, history: Sequence[Interaction | Item | str] | None = None, user: str | None = None,
                  k: int = 10, query: str | None = None, exclude: Iterable[str] = (),
                  n_candidates: int | None = None, explain: bool = True,
                  profile: Any | None = None) -> RecommendationResult:
        """A ranked, explained list for a history (titles, ids, items) and/or a known user.

        ``profile``: an :class:`~mediarec.rank.profile.InterestProfile` (or its retrieval text) mixed
        into the text-side query (``FusionSettings.profile_weight``).

        User errors (unknown user or title, nothing to go on) raise MediarecError; LLM failures
        never do: the result falls back to the retrieval ranking and says so.
        """
        if k < 1:
            raise MediarecError("k must be at least 1")
        pairs: list[tuple[Item, Interaction | None]] = []
        if user is not None:
            pairs += [(self.catalog.item(x.item), x) for x in self.catalog.history(user)]
        if history:
            pairs += self._history_pairs(history)
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        n_cands = max(k, n_candidates or self.n_candidates) if self.reranker else k
        n_cands = min(n_cands, 52)
        if profile is not None and not isinstance(profile, str):
            from mediarec.rank.profile import profile_query

            profile = profile_query(profile)
        cands = self.retriever.candidates([it for it, _ in pairs], k=n_cands, query=query, exclude=exclude,
                                          profile=profile)
        seconds["retrieval"] = time.perf_counter() - t0
        stages = ["retrieval"]
        result = RecommendationResult(items=[], candidates=cands, stages=stages, request=query,
                                      llm=self.llm.spec if self.llm else None, seconds=seconds)
        if not cands:
            result.notes.append("no candidates: every retrievable item is already in the history or excluded")
            return result
        if self.reranker is None:
            result.items = [RankedItem(rank=r + 1, item=c.item, score=c.score, retrieval_score=c.score,
                                       sources=c.sources) for r, c in enumerate(cands[:k])]
            return result
        out = self.reranker.rerank(pairs, cands, k, request=query, explain=explain)
        stages.append(f"llm-{out.mode}")
        if "explain" in out.seconds:
            stages.append("explain")
        result.seconds.update(out.seconds)  # the model holds its own copy of `seconds`
        by_id = {c.item.id: c for c in cands}
        result.items = [RankedItem(rank=r + 1, item=by_id[i].item, score=out.final_scores.get(i, by_id[i].score),
                                   reason=out.reasons.get(i), retrieval_score=by_id[i].score,
                                   llm_score=out.llm_scores.get(i), sources=by_id[i].sources)
                        for r, i in enumerate(out.order[:k])]
        result.stages = stages
        result.mode, result.degraded, result.degraded_reason = out.mode, out.degraded, out.degraded_reason
        result.repaired, result.attempts, result.usage = out.repaired, out.attempts, out.usage
        if out.explain_error:
            result.notes.append(out.explain_error)
        return result
