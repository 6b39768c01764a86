"""The LLM systems of an evaluation: zero-shot, calibrated and fine-tuned, side by side.

``llm`` and ``learned+llm`` rank with the model as it is; ``-cal`` divides out its prior over
labels, estimated on validation users' prompts (:mod:`mediarec.rank.calibration`); ``-ft`` ranks
with the adapter given by ``--adapter`` (:mod:`mediarec.train`). All of them see the same prompts,
so the paired tests compare only what the variant changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from mediarec.errors import ConfigError

BASES = ("llm", "learned+llm")
VARIANTS = {"": "zero-shot", "-cal": "calibrated (label prior divided out)", "-ft": "fine-tuned adapter"}
PRIOR_USERS = 20
PRIOR_PERMUTATIONS = 3
HISTORY_TOLERANCE = 0.005  # NDCG@10 a shorter history may lose on validation and still be chosen


def llm_parts(name: str) -> tuple[str, str] | None:
    """``learned+llm-cal`` -> ("learned+llm", "-cal"); None for a system without an LLM stage."""
    for variant in sorted(VARIANTS, key=len, reverse=True):
        base = name[: len(name) - len(variant)] if variant else name
        if (not variant or name.endswith(variant)) and base in BASES:
            return base, variant
    return None


@dataclass
class LLMFamilies:
    """The models and settings the LLM systems of one run share."""

    llm: Any
    provider: Any
    candidates: int
    adapted: Any = None  # the LLM with the adapter, for -ft systems
    label_prior: dict[str, float] | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    def system(self, name: str, weight: float, label: str | None = None, history: int | None = None):
        """The system ``name`` with LLM fusion weight ``weight`` and at most ``history`` history items
        in its prompts (default: the reranker's), named ``label`` (default NAME@W, or NAME@W@hH)."""
        from mediarec.eval.systems import learned_system, llm_system
        from mediarec.rank.reranker import RerankSettings

        base, variant = llm_parts(name)
        llm = self.adapted if variant == "-ft" else self.llm
        rerank = RerankSettings(llm_weight=weight, label_prior=self.label_prior if variant == "-cal" else None,
                                **({"max_history": history} if history else {}))
        label = label or f"{name}@{weight}" + (f"@h{history}" if history else "")
        if base == "llm":
            return llm_system(llm, self.provider, self.candidates, name=label, rerank=rerank)
        return learned_system(base, self.provider, llm, self.candidates, label=label, rerank=rerank)


def choose(scored: dict[tuple[float, int], float], tolerance: float = HISTORY_TOLERANCE) -> tuple[float, int]:
    """The (weight, history cut) to use from validation NDCG@10: the best, except that a shorter
    history within ``tolerance`` of the best wins (fewer prompt tokens for the same quality, within
    what a few dozen validation users can tell apart); ties in weight go to the one nearest 0.5."""
    best = max(scored.values())
    near = [k for k, v in scored.items() if v >= best - tolerance]
    cut = min(h for _, h in near)
    return max((k for k in near if k[1] == cut), key=lambda k: (scored[k], -abs(k[0] - 0.5)))


def load_families(names: Sequence[str], args, catalog, provider) -> LLMFamilies | None:
    """The LLMs the named systems need (None when none has an LLM stage)."""
    from mediarec.llm import load_llm

    parts = [p for p in (llm_parts(n) for n in names) if p]
    adapter = getattr(args, "adapter", None)
    if adapter and not any(v == "-ft" for _, v in parts):
        raise ConfigError("--adapter ranks the -ft systems: add llm-ft or learned+llm-ft to --systems")
    if not parts:
        return None
    llm = load_llm(args.llm, cache_scope=catalog.name)
    if llm is None:
        raise ConfigError("the llm systems need --llm (local:NAME, openai:MODEL)")
    fam = LLMFamilies(llm=llm, provider=provider, candidates=args.candidates)
    if any(v == "-ft" for _, v in parts):
        if not adapter:
            raise ConfigError("the -ft systems rank with a trained adapter: give --adapter DIR (`mediarec train`)")
        if not getattr(llm, "is_local", False):
            raise ConfigError("--adapter needs a local model (--llm local:NAME)")
        from mediarec.rank.prompts import PromptLibrary
        from mediarec.rank.reranker import prompt_hash

        fam.adapted = load_llm(args.llm, adapter=adapter, catalog=catalog.name, prompt_hash=prompt_hash(PromptLibrary()))
        if fam.adapted.adapter_error:
            raise ConfigError(fam.adapted.adapter_error)
        fam.facts["adapter"] = str(adapter)
    return fam


def estimate_prior(fam: LLMFamilies, split, seed: int, progress: bool = False, users: int | None = None) -> None:
    """The label prior from shuffled prompts of validation users (no targets used), for -cal systems:
    ``PRIOR_USERS`` of them, or fewer where the run asks for fewer validation users (``users``)."""
    from mediarec.eval.split import sample_users
    from mediarec.eval.systems import retrieval_system
    from mediarec.rank.calibration import estimate_label_prior
    from mediarec.rank.prompts import PromptLibrary, history_entries
    from mediarec.rank.reranker import RerankSettings

    hybrid = retrieval_system("hybrid", fam.provider)
    hybrid.fit(split.train_catalog)
    samples = []
    for u in sample_users(split.valid_history, min(PRIOR_USERS, users or PRIOR_USERS), seed + 1):
        hist = split.valid_history[u]
        if not hist:
            continue
        scores = hybrid.score_array(hist)
        rows = [r for r in np.argsort(-scores, kind="stable")[: fam.candidates] if np.isfinite(scores[r])]
        if len(rows) == fam.candidates:
            items = [split.train_catalog.item(hybrid.item_ids[r]) for r in rows]
            samples.append((history_entries(split.train_catalog.history_pairs(hist), RerankSettings().max_history),
                            items))
    prior, usage = estimate_label_prior(fam.llm, PromptLibrary(), samples, PRIOR_PERMUTATIONS, seed)
    fam.label_prior = prior
    fam.facts["label_prior"] = {k: round(float(np.exp(v)), 4) for k, v in prior.items()}
    fam.facts["label_prior_prompts"] = len(samples) * PRIOR_PERMUTATIONS


def in_pool(position_pairs: Sequence[tuple[int, int]]) -> dict[str, float]:
    """NDCG@10 inside the LLM's pool (users whose target was retrieved): the final order's and the
    retrieval order's, LlamaRec's "inside the top 20" numbers, with the paired bootstrap p of their
    difference over the same users (the claim "the LLM orders the pool better" needs its own test:
    the overall p dilutes it with the users the LLM cannot help)."""
    from mediarec.eval.metrics import ndcg_at_k
    from mediarec.eval.stats import paired_bootstrap_p

    if not position_pairs:
        return {}
    pos, final = zip(*position_pairs)
    f, r = ndcg_at_k(final, 10), ndcg_at_k(pos, 10)
    return {"users_in_pool": len(position_pairs),
            "ndcg@10_in_pool": round(float(np.mean(f)), 4),
            "retrieval_ndcg@10_in_pool": round(float(np.mean(r)), 4),
            "p_in_pool_vs_retrieval": round(paired_bootstrap_p(f, r), 4)}
