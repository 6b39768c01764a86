"""Our retrieval and LLM rankers wrapped as evaluation systems (see ``evaluation.Scorer``).

``text``, ``collab`` and ``hybrid`` share one Chroma index built on the training split (the text
side is reused across splits, the collaborative side rebuilt: the fingerprints say which).
``llm`` reranks the hybrid retriever's top C with an LLM; items outside the top C are unranked, so
a target the retriever missed counts as a miss.

Variants measure issue 5's two text aids against their base, in one run: ``<base>+summaries``
embeds the stored ``mediarec enrich`` summaries of thin items (a second index, prefixed
``-enriched``), ``<base>+profile`` mixes each user's interest profile into the text query
(``+profile@0.5`` sets its share, ``FusionSettings.profile_weight``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from mediarec.catalog.model import Catalog, Interaction
from mediarec.config import Settings, get_settings
from mediarec.errors import ConfigError
from mediarec.index.store import CatalogIndex, IndexSettings, build_lock, chroma_errors, make_client
from mediarec.llm.base import LLM
from mediarec.rank.prompts import PromptLibrary
from mediarec.rank.reranker import Reranker, RerankSettings
from mediarec.index.retriever import Candidate, FusionSettings, Retriever


class IndexProvider:
    """One evaluation index per training catalog, shared by the retrieval systems."""

    def __init__(self, settings: Settings | None = None, index_settings: IndexSettings | None = None,
                 embedder: Any | None = None, chroma_url: str | None = None, progress: bool = False):
        self.settings = settings or get_settings()
        self.index_settings = index_settings
        self.embedder = embedder
        self.chroma_url = chroma_url
        self.progress = progress
        self._cache: dict[str, tuple[str, CatalogIndex]] = {}  # prefix -> (fingerprint, index)

    def get(self, train: Catalog) -> CatalogIndex:
        # An enriched catalog (other item text) gets its own collections, so plain and enriched
        # systems in one run do not rebuild each other's text side.
        prefix = f"{train.name}-eval" + ("-enriched" if getattr(train, "enriched", 0) else "")
        fp = train.fingerprint()
        hit = self._cache.get(prefix)
        if hit is None or hit[0] != fp:
            # The same lock as `mediarec index`: two evaluations of one catalog at once take turns.
            with build_lock(self.settings, prefix, self.chroma_url), \
                    chroma_errors(f"building the evaluation index {prefix!r} failed (run the evaluation again "
                                  "to resume)"):
                client = make_client(self.settings, prefix, self.chroma_url)
                idx = CatalogIndex(train, client, self.index_settings, embedder=self.embedder, prefix=prefix)
                self._cache[prefix] = (fp, idx.build(progress=self.progress))
            self.embedder = idx._embedder
        return self._cache[prefix][1]


class ProfileQueries:
    """History -> interest-profile retrieval text, by the LLM when given one, else the fallback
    profile (genres, tags and decades of the history); counts which wrote each."""

    def __init__(self, llm: LLM | None = None, prompts: PromptLibrary | None = None):
        self.llm = llm
        self.prompts = prompts or PromptLibrary()
        self.stats = {"profiles": 0, "by_llm": 0, "seconds": 0.0}

    def __call__(self, pairs: list) -> str:
        from mediarec.rank.profile import build_profile, profile_query

        t0 = time.perf_counter()
        prof = build_profile(self.llm, self.prompts, pairs)
        self.stats["profiles"] += 1
        self.stats["by_llm"] += prof.source == "llm"
        self.stats["seconds"] += time.perf_counter() - t0
        return profile_query(prof)

    def extra(self) -> dict[str, Any]:
        n = max(self.stats["profiles"], 1)
        return {"profile_source": self.llm.spec if self.llm is not None else "fallback",
                "profiles_by_llm_rate": self.stats["by_llm"] / n, "profile_seconds_per_user": self.stats["seconds"] / n}


class RetrievalSystem:
    """``text``, ``collab`` or ``hybrid``: exact full-catalogue scores from the retriever.

    ``summaries``: embed the thin items' stored summaries (True: the catalog's ``mediarec enrich``
    file, or a path); ``profile``: a :class:`ProfileQueries` whose text joins the text query, with
    ``profile_weight`` as its share (None: the FusionSettings default).
    """

    def __init__(self, name: str, provider: IndexProvider, fusion: FusionSettings | None = None, *,
                 summaries: bool | str | Path = False, profile: ProfileQueries | None = None,
                 profile_weight: float | None = None, base: str | None = None):
        self.name = name
        base = base or name
        self.sides = {"text": ("text",), "collab": ("collab",), "hybrid": ("collab", "text")}[base]
        self.provider = provider
        self.fusion = fusion  # None: the retriever's defaults for this catalogue
        self.summaries = summaries
        self.profile = profile
        self.profile_weight = profile_weight
        self.retriever: Retriever | None = None
        self.item_ids: list[str] | None = None
        self.extra: dict[str, Any] = {}

    def fit(self, train: Catalog) -> None:
        if self.summaries:
            from mediarec.catalog.enrich import apply_summaries

            path = None if self.summaries is True else self.summaries
            enriched = apply_summaries(train, path)
            if not getattr(enriched, "enriched", 0):
                raise ConfigError(f"{self.name}: no item summaries stored for {train.name!r}; "
                                  f"run `mediarec enrich --dataset {train.name}` first")
            self.extra["enriched_items"] = enriched.enriched
            train = enriched
        self.catalog = train
        self.retriever = Retriever(self.provider.get(train), self.fusion)
        update: dict[str, float] = {}
        if self.sides == ("text",):
            update["text_weight"] = 1.0
        if self.profile_weight is not None:
            update["profile_weight"] = self.profile_weight
        if update:
            self.retriever.fusion = self.retriever.fusion.model_copy(update=update)
        if self.profile is not None:
            self.extra["profile_weight"] = self.retriever.fusion.profile_weight
        self.item_ids = self.retriever.index.item_ids

    def score_array(self, history: list[Interaction]) -> np.ndarray:
        if not history:
            return np.zeros(len(self.item_ids))
        profile = None
        if self.profile is not None:
            profile = self.profile([(self.catalog.items[x.item], x) for x in history])
            self.extra.update(self.profile.extra())
        return self.retriever.score_all(history, sides=self.sides, profile=profile)

    def score(self, history: list[Interaction], candidates: list[str] | None = None) -> dict[str, float]:
        arr = self.score_array(history)
        ids = self.item_ids if candidates is None else candidates
        pos = self.retriever.index.position
        return {i: float(arr[pos(i)]) for i in ids if pos(i) is not None}


class LLMSystem:
    """Hybrid retrieval, then the LLM reranks the top ``n_candidates``."""

    def __init__(self, llm: LLM, provider: IndexProvider, n_candidates: int = 20,
                 fusion: FusionSettings | None = None, rerank: RerankSettings | None = None,
                 prompts: PromptLibrary | None = None, name: str = "llm"):
        self.name = name
        self.hybrid = RetrievalSystem("hybrid", provider, fusion)
        self.reranker = Reranker(llm, prompts or PromptLibrary(), rerank or RerankSettings())
        self.n_candidates = n_candidates
        self.extra: dict[str, Any] = {}
        self._reset_stats()

    def _reset_stats(self) -> None:
        self._stats = {"users": 0, "degraded": 0, "repaired": 0, "retries": 0, "input_order_kept": 0,
                       "prompt_tokens": 0, "completion_tokens": 0, "llm_seconds": 0.0, "cached": 0}
        self.calls: list[tuple[list[str], list[str]]] = []  # (prompt order, LLM order) per user, in call order

    def fit(self, train: Catalog) -> None:
        self.hybrid.fit(train)
        self.catalog = train
        self._reset_stats()

    def score(self, history: list[Interaction], candidates: list[str] | None = None,
              target: str | None = None) -> dict[str, float]:
        arr = self.hybrid.score_array(history)
        ids = self.hybrid.item_ids
        pos = self.hybrid.retriever.index.position
        if candidates is None:
            top = np.argsort(-arr, kind="stable")[: self.n_candidates]
            pool = [ids[j] for j in top if np.isfinite(arr[j])]
        else:
            pool = sorted(candidates, key=lambda i: -arr[pos(i)])[:52]
        cands = [Candidate(item=self.catalog.items[i], score=float(arr[pos(i)])) for i in pool]
        if not cands:
            return {}
        hist_pairs = [(self.catalog.items[x.item], x) for x in history]
        out = self.reranker.rerank(hist_pairs, cands, k=len(cands), explain=False)
        s = self._stats
        s["users"] += 1
        s["degraded"] += out.degraded
        s["repaired"] += out.repaired
        s["retries"] += max(0, out.attempts - 1)
        s["input_order_kept"] += out.input_order_kept
        s["prompt_tokens"] += out.usage.prompt_tokens
        s["completion_tokens"] += out.usage.completion_tokens
        s["llm_seconds"] += out.seconds.get("llm", 0.0)
        s["cached"] += out.usage.cached
        self._update_extra()
        self.calls.append(([c.item.id for c in cands], list(out.order)))
        n = len(out.order)
        return {i: 1000.0 + (n - r) for r, i in enumerate(out.order)}  # reranked pool above everything else

    def _update_extra(self) -> None:
        s = self._stats
        n = max(s["users"], 1)
        self.extra = {"users": s["users"], "fallback_rate": s["degraded"] / n, "repair_rate": s["repaired"] / n,
                      "retries_per_user": s["retries"] / n, "input_order_kept_rate": s["input_order_kept"] / n,
                      "prompt_tokens_per_user": s["prompt_tokens"] / n,
                      "completion_tokens_per_user": s["completion_tokens"] / n,
                      "llm_seconds_per_user": s["llm_seconds"] / n, "cached_rate": s["cached"] / n,
                      "mode": self.reranker.resolved_mode(), "llm_weight": self.reranker.settings.llm_weight,
                      "n_candidates": self.n_candidates}

    def position_pairs(self, targets: list[str]) -> list[tuple[int, int]]:
        """(position of the target in the prompt, its rank after the LLM) for users whose target was in the pool."""
        pairs = []
        for (pool, order), t in zip(self.calls, targets):
            if t in pool:
                pairs.append((pool.index(t) + 1, order.index(t) + 1))
        return pairs

