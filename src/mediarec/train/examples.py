"""Training and validation examples for the LLM: the scoring prompt, token ids, the target's label.

A training example is one position of one training history: the (at most ``max_history``) items
before it, and the item consumed there hidden among the retriever's best other candidates for that
history (hard negatives). ``order="shuffled"`` (the default) shuffles them so the label carries no
position; ``order="retrieval"`` keeps only positions whose item the retriever put in its top
``n_candidates`` and shows that top in retrieval order, exactly as ranking does (the model may then
learn when to trust the retriever's order, and validation sees the same distribution). The prompt is the
product's own scoring prompt (:func:`mediarec.rank.reranker.score_messages`), tokenised by the
same llama.cpp tokenizer and chat template that rank at serving time.

Only the split's *training* catalog is read, so no validation or test target is ever a target or
a history item here; validation examples are the held-out validation targets, with the candidates
in retrieval order as at ranking time. Examples carry token ids and labels, never a user id.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, Field

from mediarec.catalog.model import Catalog, Interaction
from mediarec.rank.prompts import PromptLibrary, history_entries, labels as make_labels
from mediarec.rank.reranker import score_messages


class ExampleSettings(BaseModel):
    """How examples are drawn; ``positions_per_user`` caps how many positions one history gives."""

    examples: int = Field(1000, ge=1)
    max_history: int = Field(5, ge=1)  # as RerankSettings.max_history: train on the prompt that ranks
    n_candidates: int = Field(20, ge=2, le=52)
    min_history: int = Field(3, ge=1)
    positions_per_user: int = Field(8, ge=1)
    #: "shuffled": the target among hard negatives in a random order; "retrieval": only targets the
    #: retriever found, the candidates in its order (as at ranking time).
    order: Literal["shuffled", "retrieval"] = "shuffled"
    seed: int = 0


@dataclass
class Example:
    """One prompt: its tokens, the label tokens in label order, and the target's index among them
    (None for a validation example whose target the retriever did not find)."""

    tokens: list[int]
    label_tokens: list[int]
    target: int | None
    retrieval_rank: int | None = None  # 1-based rank of the target in retrieval order (None: not retrieved)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> "Example":
        return cls(**json.loads(line))


class PromptTokenizer:
    """Messages -> token ids as the local model evaluates them (its GGUF chat template, its vocab)."""

    def __init__(self, llm: Any):
        self.llm = llm  # a LocalLLM: format_prompt, tokenize, label_token_ids

    def __call__(self, messages) -> list[int]:
        return self.llm.tokenize(self.llm.format_prompt(messages))

    def labels(self, n: int) -> list[int]:
        return self.llm.label_token_ids(make_labels(n))


ScoreFn = Callable[[Sequence[Interaction]], np.ndarray]


def _top(scores: np.ndarray, n: int, drop: Iterable[int] = ()) -> list[int]:
    s = scores.copy()
    s[list(drop)] = -np.inf
    finite = np.flatnonzero(np.isfinite(s))
    order = finite[np.argsort(-s[finite], kind="stable")]
    return order[:n].tolist()


def training_examples(train: Catalog, score: ScoreFn, item_ids: Sequence[str], tokenizer: PromptTokenizer,
                      settings: ExampleSettings, prompts: PromptLibrary | None = None,
                      progress: Callable[[int], None] | None = None,
                      trace: list[tuple[str, int, str]] | None = None,
                      held_out: dict[str, set[str]] | None = None) -> list[Example]:
    """``settings.examples`` examples from the training catalog's histories (see the module docstring).

    ``score(history)`` gives every item's retrieval score aligned with ``item_ids`` (consumed items
    -inf). Positions are drawn per user from the later part of each history, users in a seeded
    round robin, so many people are covered before anyone gives a second example. ``held_out``:
    each person's validation and test targets, which are never shown, not even as negatives.
    ``trace`` receives (user, position, target item) of each example, for checking what was drawn."""
    prompts = prompts or PromptLibrary()
    rng = random.Random(settings.seed)
    position = {i: r for r, i in enumerate(item_ids)}
    n = settings.n_candidates
    label_tokens = tokenizer.labels(n)
    per_user: dict[str, list[int]] = {}
    for u, hist in train.by_user.items():
        ks = [k for k, x in enumerate(hist) if x.is_positive and k >= settings.min_history and x.item in position]
        rng.shuffle(ks)
        if ks:
            per_user[u] = ks[: settings.positions_per_user]
    users = sorted(per_user)
    rng.shuffle(users)
    drawn: list[tuple[str, int]] = []
    for round_ in range(settings.positions_per_user):
        drawn += [(u, per_user[u][round_]) for u in users if round_ < len(per_user[u])]
    if settings.order == "shuffled":  # every drawn position makes an example
        drawn = drawn[: settings.examples]
    out: list[Example] = []
    for u, k in drawn:
        if len(out) >= settings.examples:
            break
        hist = list(train.by_user[u])
        before, target = hist[:k], hist[k].item
        later = {position[x.item] for x in hist[k + 1:] if x.item in position and x.item != target}
        later |= {position[i] for i in (held_out or {}).get(u, ()) if i in position}
        # Items the person consumed later are not negatives: they would teach the model to rank down
        # what this person went on to like.
        scores = score(before)
        rank = next((j + 1 for j, r in enumerate(_top(scores, n)) if item_ids[r] == target), None)
        if settings.order == "retrieval":
            rows = _top(scores, n, drop=later)
            if position[target] not in rows:  # the retriever missed it: ranking would never see it
                continue
        else:
            rows = [r for r in _top(scores, n, drop=later) if item_ids[r] != target][: n - 1] + [position[target]]
            rng.shuffle(rows)
        items = [train.item(item_ids[r]) for r in rows]
        msgs = score_messages(prompts, history_entries(train.history_pairs(before), settings.max_history), items)
        out.append(Example(tokenizer(msgs), label_tokens[: len(rows)], rows.index(position[target]), rank))
        if trace is not None:
            trace.append((u, k, target))
        if progress:
            progress(1)
    return out


def validation_examples(histories: dict[str, list[Interaction]], targets: dict[str, str], catalog: Catalog,
                        score: ScoreFn, item_ids: Sequence[str], tokenizer: PromptTokenizer,
                        settings: ExampleSettings, prompts: PromptLibrary | None = None) -> list[Example]:
    """One example per user, as the product ranks: the retriever's top ``n_candidates`` in retrieval
    order; ``target`` is None where the retriever missed the held-out item."""
    prompts = prompts or PromptLibrary()
    label_tokens = tokenizer.labels(settings.n_candidates)
    out = []
    for u in sorted(histories):
        before = histories[u]
        if not before:
            continue
        rows = _top(score(before), settings.n_candidates)
        ids = [item_ids[r] for r in rows]
        target = ids.index(targets[u]) if targets[u] in ids else None
        msgs = score_messages(prompts, history_entries(catalog.history_pairs(before), settings.max_history),
                              [catalog.item(i) for i in ids])
        out.append(Example(tokenizer(msgs), label_tokens[: len(ids)], target,
                           None if target is None else target + 1))
    return out


def ndcg_in_pool(ranks: Sequence[int]) -> float:
    """NDCG@10 of single targets from their 1-based ranks inside the pool (LlamaRec's "inside the top 20")."""
    from mediarec.eval.metrics import ndcg_at_k

    return float(np.mean(ndcg_at_k(ranks, 10))) if len(ranks) else 0.0


def save_examples(path: Path, examples: Sequence[Example]) -> None:
    from mediarec.infra.atomic import atomic_write_text

    atomic_write_text(path, "".join(e.to_json() + "\n" for e in examples))


def load_examples(path: Path) -> list[Example]:
    return [Example.from_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
