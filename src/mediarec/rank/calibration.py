"""Calibrated single-pass scoring: remove the model's prior over labels (PriDe-style debiasing).

A small model asked "which candidate, A–T?" prefers some letters whatever they label (A most of
all), so its scores carry the prompt position as much as the item. PriDe (Zheng et al., 2024,
"Large Language Models Are Not Robust Multiple Choice Selectors") estimates that prior from a few
prompts whose candidates are shuffled — averaged over orders, the item signal cancels and the
letters' own pull remains — and divides it out: ``p(item) ∝ p(label) / prior(label)``.

The prior needs no targets: it is estimated on users who are not evaluated (the harness uses
validation users), and one prior serves every later prompt of that model and candidate count.
"""

from __future__ import annotations

import math
import random
from typing import Sequence

from mediarec.llm.base import LLM, Usage
from mediarec.rank.fusion import softmax
from mediarec.rank.prompts import PromptLibrary, labels as make_labels


def estimate_label_prior(llm: LLM, prompts: PromptLibrary, samples: Sequence[tuple[list[dict], list]],
                         permutations: int = 3, seed: int = 0) -> tuple[dict[str, float], Usage]:
    """Log prior of each label: the mean label probability over ``permutations`` shuffled orders of
    each sample's candidates. ``samples``: (history entries, candidate items) pairs, all with the
    same number of candidates."""
    from mediarec.rank.reranker import score_messages

    if not samples:
        raise ValueError("no prompts to estimate the label prior from")
    n = len(samples[0][1])
    labs = make_labels(n)
    total = {lab: 0.0 for lab in labs}
    usage = Usage(cached=True)
    rng = random.Random(seed)
    count = 0
    for hist, items in samples:
        if len(items) != n:
            continue
        for _ in range(permutations):
            order = rng.sample(list(items), n)
            res = llm.label_logprobs(score_messages(prompts, hist, order), labs)
            usage = usage.add(res.usage)
            for lab, p in softmax(res.logprobs).items():
                total[lab] += p
            count += 1
    return {lab: math.log(max(v / count, 1e-12)) for lab, v in total.items()}, usage


def debias(logprobs: dict[str, float], prior: dict[str, float] | None) -> dict[str, float]:
    """Label log-probabilities with the prior divided out (unchanged without a prior)."""
    if not prior:
        return logprobs
    return {lab: lp - prior.get(lab, 0.0) for lab, lp in logprobs.items()}
