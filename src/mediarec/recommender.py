"""The recommender: catalog → index → candidates → prompt → LLM → parsed ranking → scores.

```python
import mediarec
rec = mediarec.from_dataset("demo")   # the composition root (mediarec.app) assembles it
result = rec.recommend(history=["Alien (1979)", "Blade Runner (1982)"], k=10)
```

One pipeline: ``recommend`` (Python, CLI, chat) and the evaluation harness go through the same
ranking code. The harness scores a ``Recommender`` directly: it offers the harness's scorer
protocol (``name``, ``fit``, ``item_ids``, ``score_array``, ``score``, ``extra``), so what
``mediarec eval`` measures is what users get.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from mediarec.catalog import Catalog, Interaction, Item
from mediarec.catalog.model import pair_liked, repeat_policy
from mediarec.errors import ConfigError, MediarecError
from mediarec.index.retriever import Candidate, FusionSettings, Retriever
from mediarec.index.seq import SeqSource
from mediarec.index.store import CatalogIndex
from mediarec.llm import LLM
from mediarec.rank.explanations import HistoryPairs, ReasonMemo, explain_result
from mediarec.rank.learned import LearnedSettings, SecondStage
from mediarec.rank.mix import calibrate_scores, calibrated_order, media_shares, medium
from mediarec.rank.prompts import MAX_LABELS, PromptLibrary
from mediarec.rank.request import tiered_candidates
from mediarec.rank.reranker import Reranker, RerankOutcome, RerankSettings
from mediarec.rank.result import HistoryBasis, RankedItem, RecommendationResult

#: How many of a list's first places follow the history's mix of media (the evaluation reads up to 20).
MIX_PLACES = 100
#: History (item, interaction) pairs -> interest-profile text for the retriever (see ``profile_source``).
ProfileSource = Callable[[HistoryPairs], str | None]


class StageStats:
    """What the LLM stage did over many requests: fallbacks, repairs, tokens, time, and the
    (prompt order, LLM order) of each call, which the harness turns into a position-bias plot."""

    MAX_CALLS = 100_000  # a long-running service keeps the counts, not every order

    def __init__(self) -> None:
        self.requests = self.degraded = self.repaired = self.retries = self.input_order_kept = 0
        self.prompt_tokens = self.completion_tokens = self.cached = 0
        self.llm_seconds = 0.0
        self.calls: list[tuple[list[str], list[str]]] = []

    def record(self, candidates: Sequence[Candidate], out: RerankOutcome) -> None:
        self.requests += 1
        self.degraded += out.degraded
        self.repaired += out.repaired
        self.retries += max(0, out.attempts - 1)
        self.input_order_kept += out.input_order_kept
        self.prompt_tokens += out.usage.prompt_tokens
        self.completion_tokens += out.usage.completion_tokens
        self.cached += out.usage.cached
        self.llm_seconds += out.seconds.get("llm", 0.0)
        if len(self.calls) < self.MAX_CALLS:
            self.calls.append(([c.item.id for c in candidates], list(out.order)))

    def summary(self) -> dict[str, Any]:
        n = max(self.requests, 1)
        return {"users": self.requests, "fallback_rate": self.degraded / n, "repair_rate": self.repaired / n,
                "retries_per_user": self.retries / n, "input_order_kept_rate": self.input_order_kept / n,
                "prompt_tokens_per_user": self.prompt_tokens / n,
                "completion_tokens_per_user": self.completion_tokens / n,
                "llm_seconds_per_user": self.llm_seconds / n, "cached_rate": self.cached / n}

    def position_pairs(self, targets: Sequence[str]) -> list[tuple[int, int]]:
        """(position in the prompt, rank after the LLM) of each call's target, where it was in the pool."""
        return [(pool.index(t) + 1, order.index(t) + 1)
                for (pool, order), t in zip(self.calls, targets) if t in pool]


class Recommender:
    """Retrieval plus an optional LLM ranking stage over one catalog.

    ``n_candidates``: how many retrieved items the LLM ranks (at most the 52 one-token labels).
    ``second_stage``: the learned reranker's settings (:mod:`mediarec.rank.learned`), None for the
    fused retrieval alone; its model is read from ``home``; :meth:`fit` (and ``serve(train=True)``,
    which the composition root :mod:`mediarec.app` calls) trains a missing one when
    ``train_second_stage`` allows it, else the fused retrieval serves and the result says so.
    Building a Recommender never trains, fetches or starts a process.
    ``name``, ``index_source``, ``summaries``: what the evaluation harness needs to refit the same
    configuration on its training split (see :meth:`fit`). ``profile_source``: writes an interest
    profile from the history, mixed into the text query of every request that brings none.
    """

    #: Read requests with the LLM too (:mod:`mediarec.rank.request_llm`, by scoring the catalogue's
    #: words); the rules and the MiniLM fallback alone by default.
    llm_requests: bool = False

    def __init__(self, catalog: Catalog | None = None, index: CatalogIndex | None = None, llm: LLM | None = None,
                 fusion: FusionSettings | None = None, rerank: RerankSettings | None = None,
                 prompts: PromptLibrary | None = None, n_candidates: int = 20, use_profile: bool = False, *,
                 name: str = "mediarec", index_source: Callable[[Catalog], CatalogIndex] | None = None,
                 summaries: bool | str | Path = False, profile_source: ProfileSource | None = None,
                 sources: dict[str, str] | None = None, second_stage: LearnedSettings | None = None,
                 home: str | Path | None = None, train_second_stage: bool = True, progress: bool = False,
                 retrain_job: Callable[[str], int | None] | None = None, seq: SeqSource | None = None,
                 include_seen: bool = False):
        if not 1 <= n_candidates <= MAX_LABELS:
            raise ConfigError(f"n_candidates must be from 1 to {MAX_LABELS} (one label per candidate)")
        if second_stage is not None and home is None:
            raise ConfigError("a learned second stage is stored under a home: pass home= (Settings.home)")
        self.name = name
        # Liked items already consumed may come back (a replay; issue 28): the catalogue's repeat
        # policy or the caller's choice; recommend(include_seen=...) overrides it per request.
        # Disliked and low-rated items never come back.
        self.include_seen = include_seen
        self._replay_policy: str | None = None  # the catalog's, read once when replays are first asked for
        self.use_profile = use_profile  # chat sessions mix the interest profile into retrieval
        self.fusion = fusion
        self.llm = llm
        self.prompts = prompts or PromptLibrary()
        self.reranker = Reranker(llm, self.prompts, rerank) if llm is not None else None
        self.n_candidates = n_candidates
        self.index_source = index_source
        self.summaries = summaries
        self.profile_source = profile_source
        self.stats = StageStats()
        self.second_stage = second_stage
        self.home = Path(home) if home is not None else None
        self.train_second_stage = train_second_stage
        self.progress = progress  # bars on stderr while the learned stage trains
        self.retrain_job = retrain_job  # starts a catalog's background retrain; its pid, None if one runs
        self.seq = seq  # where the catalog's sequential model comes from (a third retrieval side, features)
        self.stage: SecondStage | None = None
        self.sources = dict(sources or {})  # where settings came from, for RecommendationResult.settings
        self.catalog: Catalog | None = None
        self.index: CatalogIndex | None = None
        self.retriever: Retriever | None = None
        self._media: list[str] | None = None  # each index row's medium; None where the catalog has one
        if catalog is not None and index is not None:
            self.serve(catalog, index)

    def close(self) -> None:
        """Free the LLM's model (its owner, whoever built this Recommender, calls it when done)."""
        if self.llm is not None:
            self.llm.close()

    def __enter__(self) -> "Recommender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def settings_report(self) -> dict[str, Any]:
        """The settings this recommender ranks with, and where each came from (``--json`` shows it)."""
        rec = self._ready()
        collab = rec.index.settings.collab
        out: dict[str, Any] = {
            "collab": {k: getattr(collab, k) for k in ("ease_lambda", "alpha", "window", "decay", "strength")}
            | {"source": self.sources.get("collab", "defaults")},
            "fusion": rec.retriever.fusion.model_dump(), "n_candidates": self.n_candidates,
            "seq": self.seq.status if self.seq is not None else "sequential model off",
            "second_stage": {"active": bool(self.stage and self.stage.active),
                             "status": self.stage.status if self.stage else "off (the fused retrieval ranks)"}
            | ({"model": str(self.stage.path), "pool": self.stage.settings.pool} if self.stage else {})}
        if self.reranker is not None:
            out["llm"] = {"spec": self.llm.spec, "mode": self.reranker.resolved_mode(),
                          "llm_weight": self.reranker.settings.llm_weight,
                          "source": self.sources.get("llm_weight", "default"),
                          "history_cut": self.reranker.settings.max_history,
                          "history_cut_source": self.sources.get("history_cut", "default")}
        return out

    def serve(self, catalog: Catalog, index: CatalogIndex, train: bool = False, restart_retrain: bool = False) -> None:
        """Answer from ``catalog`` and its built ``index`` from now on (the retriever and the learned
        stage are made first, so requests meanwhile are answered by the previous ones).
        ``train``: train the learned stage when no stored model fits (``train_second_stage`` allows it);
        ``restart_retrain``: start a carried-over model's interrupted background retrain again
        (through ``retrain_job``, which the composition root gives)."""
        may_train = train and self.train_second_stage
        seq_model = self.seq.model_for(catalog, train=may_train) if self.seq is not None else None
        retriever = Retriever(index, self.fusion, seq=seq_model)
        stage = None
        if self.second_stage is not None:
            src = self.seq
            stage = SecondStage(catalog, index, retriever.fusion, self.second_stage, self.home,
                                progress=self.progress, seq=seq_model,
                                seq_source=None if src is None else
                                (lambda c: src.model_for(c, train=may_train, check_size=False)))
            if train and self.train_second_stage:
                stage.train_missing()
            if restart_retrain and self.train_second_stage and stage.retrain_interrupted \
                    and self.retrain_job is not None and self.retrain_job(catalog.name) is not None:
                stage.retrain_started()
        media = [medium(catalog.items[i].kind) for i in index.item_ids]
        self._media = media if len(set(media)) > 1 else None
        self.catalog, self.index, self.retriever, self.stage = catalog, index, retriever, stage

    # -- the evaluation harness's scorer protocol (mediarec.eval.harness.Scorer) -----------------
    def fit(self, train: Catalog) -> None:
        """Serve the training catalog ``train`` with this configuration (the harness calls this once
        per split): its item summaries when ``summaries`` is set, its index from ``index_source``."""
        if self.index_source is None:
            raise ConfigError(f"{self.name}: fit() needs an index_source (catalog -> built index)")
        if self.summaries:
            from mediarec.catalog.enrich import apply_summaries

            enriched = apply_summaries(train, None if self.summaries is True else self.summaries)
            if not enriched.summarised_items:
                raise ConfigError(f"{self.name}: no item summaries stored for {train.name!r}; "
                                  f"run `mediarec enrich --dataset {train.name}` first")
            train = enriched
        self.stats = StageStats()
        self.serve(train, self.index_source(train), train=True)

    @property
    def item_ids(self) -> list[str]:
        return self._ready().index.item_ids

    @property
    def extra(self) -> dict[str, Any]:
        """Facts about the run for the evaluation report: the LLM stage's rates and settings."""
        out: dict[str, Any] = {}
        if self.summaries and self.catalog is not None:
            out["enriched_items"] = self.catalog.summarised_items
        if self.profile_source is not None:
            out["profile_weight"] = self._ready().retriever.fusion.profile_weight
            out.update(getattr(self.profile_source, "extra", dict)())
        if self.stage is not None:
            meta = self.stage.ranker.meta if self.stage.ranker is not None else {}
            out["second_stage"] = self.stage.status
            out.update({f"learned_{k}": meta[k] for k in ("examples_in_pool", "best_iteration", "seconds")
                        if k in meta})
            if meta.get("importance"):
                top = sorted(meta["importance"].items(), key=lambda kv: -kv[1])[:5]
                out["learned_top_features"] = ", ".join(f"{k} {v:.0f}" for k, v in top)
        if self.reranker is not None:
            out.update(self.stats.summary())
            out.update(mode=self.reranker.resolved_mode(), llm_weight=self.reranker.settings.llm_weight,
                       history_cut=self.reranker.settings.max_history,
                       n_candidates=self.n_candidates)
        return out

    def score_array(self, history: Sequence[Interaction]) -> np.ndarray:
        """Every catalog item's score (aligned with ``item_ids``) as :meth:`recommend` ranks them:
        the LLM's order over the retrieved pool first, then the rest in retrieval order."""
        rec = self._ready()
        if not history:
            return np.zeros(len(rec.index.item_ids))
        pairs = rec.catalog.history_pairs(history)
        profile = self._profile_for(pairs, None)
        fused = rec.retriever.score_all(history, profile=profile, include_seen=self.include_seen)
        scores = self.learned_order(history, fused, profile)
        scores = self._mixed(scores, pairs)
        if self.reranker is None:
            return scores
        top = np.argsort(-scores, kind="stable")[: self._pool_size(self.n_candidates)]
        return self._lift(scores, [j for j in top if np.isfinite(scores[j])], pairs)

    def score(self, history: Sequence[Interaction], candidates: list[str] | None = None) -> dict[str, float]:
        """Scores of ``candidates`` (item ids; None = every item); the LLM ranks the best of them."""
        rec = self._ready()
        pos = rec.index.position
        rows = [p for p in (pos(i) for i in (rec.index.item_ids if candidates is None else candidates))
                if p is not None]
        if not history:
            return {rec.index.item_ids[r]: 0.0 for r in rows}
        pairs = rec.catalog.history_pairs(history)
        profile = self._profile_for(pairs, None)
        scores = rec.retriever.score_all(history, profile=profile, include_seen=self.include_seen)
        learned = self.stage is not None and self.stage.active
        if learned or self._media is not None:  # the learned stage and the mix order these candidates only
            masked = np.full(len(scores), -np.inf)
            masked[rows] = scores[rows]
            scores = self._mixed(self.learned_order(history, masked, profile) if learned else masked, pairs)
        if self.reranker is not None:
            pool = sorted((r for r in rows if np.isfinite(scores[r])), key=lambda r: -scores[r])
            scores = self._lift(scores, pool[: self._pool_size(self.n_candidates)], pairs)
        return {rec.index.item_ids[r]: float(scores[r]) for r in rows}

    # -- asking ---------------------------------------------------------------------------------
    def history_of(self, user: str) -> list[Interaction]:
        return self._ready().catalog.history(user)

    def recommend(self, history: Sequence[Interaction | Item | str] | None = None, user: str | None = None,
                  k: int = 10, query: str | None = None, exclude: Iterable[str] = (),
                  n_candidates: int | None = None, explain: bool = True,
                  profile: Any | None = None, read_request: bool = True,
                  constraints: Any | None = None,
                  on_update: Callable[[RecommendationResult], None] | None = None,
                  reasons: ReasonMemo | None = None, include_seen: bool | None = None) -> RecommendationResult:
        """A ranked, explained list for a history (titles, ids, items) and/or a known user.

        ``profile``: an :class:`~mediarec.rank.profile.InterestProfile` (or its retrieval text) mixed
        into the text-side query (``FusionSettings.profile_weight``); without one, ``profile_source``
        writes it when set. ``read_request``: parse ``query`` into constraints
        (:mod:`mediarec.rank.request`); False embeds it as it is (text written by the system).
        ``constraints``: a request read already (a chat session's standing constraints), used
        instead of reading ``query``, which still goes to the LLM.
        ``on_update``: called with a provisional result (``pending`` says what is still running) as
        soon as the first stages have ranked, and again when the LLM's order arrives, so a terminal
        shows a list at once and updates it; the returned result is the final one.
        ``reasons``: the LLM reasons written earlier in a session (a chat's :class:`ReasonMemo`),
        reused for items whose facts are unchanged; this call's reasons are added to it.
        ``include_seen``: liked items of the history may come back (None: this recommender's
        ``include_seen``, the catalogue's repeat policy); disliked and low-rated ones never do.

        User errors (unknown user or title, nothing to go on) raise MediarecError; LLM failures
        never do: the result falls back to the retrieval ranking and says so.
        """
        rec = self._ready()
        if k < 1:
            raise MediarecError("k must be at least 1")
        pairs: HistoryPairs = []
        if user is not None:
            pairs += [(rec.catalog.item(x.item), x) for x in rec.catalog.history(user)]
        if history:
            pairs += rec.catalog.history_pairs(history)
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        n_cands = self._pool_size(max(k, n_candidates or self.n_candidates)) if self.reranker else k
        if constraints is not None:  # its soft part leads the text side, else as retrieval_inputs does
            text_query = constraints.text_query() if read_request else query
            if text_query is None and not pairs and constraints.reference is None:
                text_query = query
        else:
            liked = [it for (it, _), ok in zip(pairs, pair_liked(pairs)) if ok]  # what "older" compares to
            constraints, text_query = self._read_request(query, bool(pairs), liked) if read_request else (None, query)
        # Interactions where there are some, so a dislike or a low rating stays a negative downstream.
        hist_items, profile_text = [it if x is None else x for it, x in pairs], self._profile_for(pairs, profile)
        # The learned stage was trained on histories of items consumed: with a request (the fused
        # retrieval lets it lead and applies its filters), or with nothing but dislikes to go on (its
        # features are built from the wanted items), the fused retrieval ranks.
        asked = any(q and q.strip() for q in (query, text_query))  # a chat's standing request counts too
        # ... unless it was read wholly into filters (or not at all): the history ranks within them as without one
        filtered = asked and text_query is None and constraints is not None and constraints.history_ranks
        basis = history_basis(pairs)
        learned = self.stage is not None and self.stage.active and (not asked or filtered) \
            and not basis.only_negatives
        seen = self.include_seen if include_seen is None else bool(include_seen)
        n_pool = max(n_cands, self.stage.settings.pool) if learned else n_cands
        if seen and learned:
            n_pool += self.stage.settings.repeat_pool  # room for the replays the learned stage reads
        if self._media is not None:
            n_pool = max(n_pool, MIX_PLACES)  # room for what replaces the items the mix moves down
        cap = seen and not (learned and self.stage.settings.include_seen) and self._policy() != "allow"
        if cap:
            n_pool += min(len(pairs), 500)  # room for new items below the replays that will be capped
        # "like X but Y": X's character (genres) first
        cands = tiered_candidates(rec.retriever, hist_items, k=n_pool, query=text_query, exclude=list(exclude),
                                  profile=profile_text, constraints=constraints, include_seen=seen)
        relaxed = None
        if not cands and constraints is not None and constraints.is_hard:
            # Nothing is left that satisfies the request (it contradicts a ban, or the catalogue has
            # none): the closest items without its filters, and the result says so.
            relaxed = constraints.without_filters()
            cands = rec.retriever.candidates(hist_items, k=n_cands, query=relaxed.text_query() or text_query,
                                             exclude=exclude, profile=profile_text, constraints=relaxed,
                                             include_seen=seen)
        seconds["retrieval"] = time.perf_counter() - t0
        stages = ["retrieval"]
        first_stage = {c.item.id: c.score for c in cands}
        learned_scores: dict[str, float] = {}
        if learned and cands:
            t1 = time.perf_counter()
            cands, learned_scores = self._learned_candidates(hist_items, cands, profile_text)
            seconds["learned"] = time.perf_counter() - t1
            stages.append("learned")
        replays_capped = False
        if cap and cands:
            cands, replays_capped = self._cap_replays(cands, {it.id for it, _ in pairs}, k)
        mixed = self._mix(cands, pairs, n_cands, constraints)
        if mixed is not None and [c.item.id for c in mixed[:n_cands]] == [c.item.id for c in cands[:n_cands]]:
            mixed = None  # the change is below what is shown: nothing to say
        cands = (mixed or cands)[:n_cands]
        result = RecommendationResult(items=[], candidates=cands, stages=stages, request=query,
                                      llm=self.llm.spec if self.llm else None, seconds=seconds,
                                      settings=self.settings_report(), constraints=constraints,
                                      basis=basis)
        if result.basis.only_negatives:
            b = result.basis
            what = " and ".join(w for w, ids in (("dislikes", b.disliked), ("low ratings", b.low_rated)) if ids)
            names = ", ".join(rec.catalog.items[i].label for i in (b.disliked + b.low_rated)[:3])
            result.notes.append(f"the history holds only {what} ({names}): these items are chosen to be unlike them")
        if self.stage is not None and not learned:
            result.notes.append(self.stage.status if not self.stage.active else
                                "a request: the fused retrieval ranks (the learned stage is trained on histories)"
                                if asked else "only negatives to go on: the fused retrieval ranks (the learned stage "
                                "is trained on histories of items consumed)")
        if mixed is not None:
            shares = self._shares(pairs)
            result.notes.append("the list follows the mix of media in your history ("
                                + ", ".join(f"{m} {v:.0%}" for m, v in sorted(shares.items(), key=lambda kv: -kv[1]))
                                + "): items of a medium beyond its share move down")
        if relaxed is not None:
            result.notes.append(f"nothing left satisfies the request ({constraints.describe()}): "
                                "these are the closest items without its filters")
        if seen:
            result.notes.append("items you consumed before may come back (include-seen); disliked ones never do")
        if replays_capped:
            result.notes.append("replays are at most half of the list: this catalog's log rarely replays an item, "
                                "and no model here has learned when people do")
        if not cands:
            result.notes.append("no candidates: every retrievable item is already in the history or excluded")
            return result
        first = [RankedItem(rank=r + 1, item=c.item, score=c.score, retrieval_score=first_stage[c.item.id],
                            learned_score=learned_scores.get(c.item.id), sources=c.sources)
                 for r, c in enumerate(cands[:k])]
        if on_update is not None:
            on_update(result.model_copy(update={"items": first, "stages": list(stages),
                                                "pending": "the LLM is ranking" if self.reranker else "reasons"}))
        if self.reranker is None:
            result.items = first
            explain_result(self, result, pairs, query, explain, memo=reasons)
            result.seconds["total"] = time.perf_counter() - t0
            return result
        out = self._rerank(pairs, cands, k, request=query, explain=False)  # explain_result explains, checked
        stages.append(f"llm-{out.mode}")
        result.seconds.update(out.seconds)  # the model holds its own copy of `seconds`
        by_id = {c.item.id: c for c in cands}
        result.items = [RankedItem(rank=r + 1, item=by_id[i].item, score=out.final_scores.get(i, by_id[i].score),
                                   reason=out.reasons.get(i), retrieval_score=first_stage[i],
                                   learned_score=learned_scores.get(i), llm_score=out.llm_scores.get(i),
                                   sources=by_id[i].sources)
                        for r, i in enumerate(out.order[:k])]
        result.stages = stages
        result.mode, result.degraded, result.degraded_reason = out.mode, out.degraded, out.degraded_reason
        result.repaired, result.attempts, result.usage = out.repaired, out.attempts, out.usage
        result.stage_usage["llm"] = out.usage
        if on_update is not None:
            on_update(result.model_copy(update={"items": [r.model_copy() for r in result.items], "stages": list(stages),
                                                "pending": "reasons" if explain else None}))
        explain_result(self, result, pairs, query, explain, on_update=on_update, memo=reasons)
        result.seconds["total"] = time.perf_counter() - t0
        return result

    def _cap_replays(self, cands: list[Candidate], consumed: set[str], k: int) -> tuple[list[Candidate], bool]:
        """Where the catalog's repeat policy excludes replays (its log rarely replays) and no learned
        stage with replay features ranks, a consumed item would win on similarity alone (it *is* the
        taste): the top k keep at most half replays, the rest move down in order. With only replays
        to rank there is nothing to cap. Returns (candidates, whether the top k changed)."""
        limit = (k + 1) // 2
        head: list[Candidate] = []
        moved: list[Candidate] = []
        n_replays = 0
        for c in cands:
            if c.item.id in consumed:
                if n_replays >= limit and len(head) < k:
                    moved.append(c)
                    continue
                n_replays += 1
            head.append(c)
        out = head[:k] + moved + head[k:]
        changed = [c.item.id for c in out[:k]] != [c.item.id for c in cands[:k]]
        return out, changed

    def _policy(self) -> str:
        """The catalog's repeat policy, read once (it scans the log)."""
        if self._replay_policy is None:
            self._replay_policy = repeat_policy(self.catalog)
        return self._replay_policy

    # -- the shared steps -----------------------------------------------------------------------
    def _ready(self) -> "Recommender":
        if self.retriever is None:
            raise ConfigError(f"{self.name}: no catalog yet (construct with one, or call fit())")
        return self

    def _pool_size(self, n: int) -> int:
        """How many retrieved items the LLM ranks: one label each, so at most MAX_LABELS."""
        return min(n, MAX_LABELS)

    def _read_request(self, query: str | None, has_history: bool, anchors: Sequence[Item] = (),
                      anchor_name: str = "your history"):
        """(parsed request or None, the text the retriever embeds): the soft part of the request,
        or the whole request when nothing else gives retrieval something to start from."""
        from mediarec.rank.request import retrieval_inputs

        embedder = getattr(getattr(self.retriever, "index", None), "embedder", None)

        def by_llm(text, catalog):
            """The rules, then the MiniLM fallback, then the LLM scoring the catalogue's words for
            what both left unread (:func:`~mediarec.rank.request_llm.llm_score_request`)."""
            from mediarec.rank.request import parse_request, read_by_similarity
            from mediarec.rank.request_llm import llm_score_request

            c = parse_request(text, catalog)
            if embedder is not None:
                c = read_by_similarity(c, catalog, embedder.embed)
            return llm_score_request(text, catalog, self.llm, self.prompts, read=c) if c.unread else c

        use_llm = self.llm_requests and self.llm is not None
        return retrieval_inputs(query, self.catalog, has_history, parse=by_llm if use_llm else None,
                                anchors=anchors, anchor_name=anchor_name,
                                embed=embedder.embed if embedder is not None else None)

    def _profile_for(self, pairs: HistoryPairs, profile: Any | None) -> str | None:
        if profile is None and self.profile_source is not None and pairs:
            return self.profile_source(pairs)
        if profile is not None and not isinstance(profile, str):
            from mediarec.rank.profile import profile_query

            return profile_query(profile)
        return profile

    def _rerank(self, pairs: HistoryPairs, cands: list[Candidate], k: int, request: str | None = None,
                explain: bool = True) -> RerankOutcome:
        out = self.reranker.rerank(pairs, cands, k, request=request, explain=explain)
        self.stats.record(cands, out)
        return out

    def _shares(self, pairs: HistoryPairs) -> dict[str, float]:
        """Each medium's share of the liked history ({} where the catalog holds one medium)."""
        if self._media is None:
            return {}
        return media_shares(it.kind for (it, _), ok in zip(pairs, pair_liked(pairs)) if ok)

    def _mixed(self, scores: np.ndarray, pairs: HistoryPairs) -> np.ndarray:
        """``scores`` with their top re-ordered so its media follow the history's (:mod:`mediarec.rank.mix`)."""
        shares = self._shares(pairs)
        return calibrate_scores(scores, self._media, shares, MIX_PLACES) if shares else scores

    def _mix(self, cands: list[Candidate], pairs: HistoryPairs, n: int, constraints: Any | None
             ) -> list[Candidate] | None:
        """The candidates with media following the history's, or None where the order stands: a
        catalog of one medium, no liked history, a request that names a kind or compares with a
        title (its kind leads), or every medium within its share already."""
        if constraints is not None and (constraints.kinds or constraints.exclude_kinds or constraints.reference
                                        or constraints.more_references):
            return None
        shares = self._shares(pairs)
        if not shares:
            return None
        order = calibrated_order([medium(c.item.kind) for c in cands], shares, max(n, MIX_PLACES))
        return None if order == list(range(len(cands))) else [cands[i] for i in order]

    def learned_order(self, history: Sequence[Any], scores: np.ndarray, profile: str | None = None) -> np.ndarray:
        """``scores`` with the learned stage's pool re-ordered by it and placed above every other item."""
        if self.stage is None or not self.stage.active:
            return scores
        rows, _ = self.stage.rank(history, scores, profile=profile)
        return place_on_top(scores, rows)

    def _learned_candidates(self, history: Sequence[Any], cands: list[Candidate],
                            profile: str | None) -> tuple[list[Candidate], dict[str, float]]:
        """The retrieved candidates in the learned stage's order, each scored by it (what an LLM
        stage then fuses with), and the learned scores by item id."""
        pos = self.index.position
        fused = np.full(len(self.index.item_ids), -np.inf)
        by_row = {pos(c.item.id): c for c in cands}
        fused[list(by_row)] = [c.score for c in by_row.values()]
        rows, p = self.stage.rank(history, fused, profile=profile)
        ordered = [by_row[int(r)].model_copy(update={"score": float(v)}) for r, v in zip(rows, p)]
        ranked = {c.item.id for c in ordered}
        return ordered + [c for c in cands if c.item.id not in ranked], {c.item.id: c.score for c in ordered}

    def _lift(self, scores: np.ndarray, pool: list[int], pairs: HistoryPairs) -> np.ndarray:
        """``scores`` with the pool's rows re-ordered by the LLM stage and placed above every other item."""
        if not pool:
            return scores
        ids = self.index.item_ids
        cands = [Candidate(item=self.catalog.items[ids[j]], score=float(scores[j])) for j in pool]
        out = self._rerank(pairs, cands, k=len(cands), explain=False)
        return place_on_top(scores, [self.index.position(i) for i in out.order])


def history_basis(pairs: HistoryPairs) -> HistoryBasis:
    """The result's :class:`HistoryBasis`: which history items were liked, disliked, rated low."""
    basis = HistoryBasis()
    for (it, x), ok in zip(pairs, pair_liked(pairs)):
        bucket = basis.liked if ok else basis.disliked if x is not None and x.event == "dislike" else basis.low_rated
        if it.id not in bucket:
            bucket.append(it.id)
    return basis


def place_on_top(scores: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """``scores`` with ``rows`` (best first) above every other item, in that order: how a later stage's
    order over its pool becomes a full ranking (the rest keep the earlier stage's order below)."""
    if not len(rows):
        return scores
    lifted = scores.copy()
    lifted[list(rows)] = float(np.max(scores[np.isfinite(scores)])) + 1.0 + np.arange(len(rows), 0, -1)
    return lifted
