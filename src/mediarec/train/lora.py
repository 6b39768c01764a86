"""LoRA fine-tuning of the local model on CPU: torch + peft + transformers, resumable.

The base model is the GGUF the product ranks with, loaded dequantised by transformers, so the
adapter learns on the weights it will be applied to. The loss is LlamaRec's: cross-entropy over
the candidates' label tokens at the answer position, the same numbers the single-pass scorer reads.

CPU economy: LoRA sits on the top ``layers`` fraction of the blocks only; autograd then stops
there, so a step costs one forward pass plus a short backward (measured on SmolLM2-135M, 500
tokens, a loaded 2-core machine: 15-19 s with every layer, 6-8 s with the top third).

A checkpoint (adapter weights, optimizer, scheduler, progress) is written atomically after every
``chunk`` examples, with a validation NDCG@10 inside the candidate pool, so a killed run resumes
where it stopped and the best chunk is the one exported.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel, Field

from mediarec.train.examples import Example, ndcg_in_pool

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
LOG = "train_log.jsonl"


class TrainSettings(BaseModel):
    """LlamaRec's LoRA (r 8, alpha 32, q/v projections), with CPU-sized batches and schedule."""

    epochs: int = Field(1, ge=1)
    batch: int = Field(8, ge=1)  # examples per optimizer step (gradient accumulation)
    lr: float = Field(3e-4, gt=0)
    warmup: float = Field(0.05, ge=0, lt=1)
    rank: int = Field(8, ge=1)
    alpha: float = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] = ["q_proj", "v_proj"]
    layers: float = Field(1 / 3, gt=0, le=1)  # the top fraction of blocks that get LoRA
    chunk: int = Field(128, ge=1)  # examples between checkpoints and validations
    threads: int | None = None
    seed: int = 0


def _torch():
    import importlib

    try:
        torch = importlib.import_module("torch")
        for name in ("peft", "transformers", "gguf"):
            importlib.import_module(name)
    except ImportError as e:
        from mediarec.errors import ConfigError

        raise ConfigError(f"training needs the [train] extra ({e.name} is missing): "
                          "pip install 'mediarec[train]' (with torch==2.13.0 pinned)") from None
    return torch


def load_base(gguf: Path, threads: int | None = None):
    """The GGUF as a transformers model (dequantised to fp32) and its architecture's config."""
    torch = _torch()
    from transformers import AutoModelForCausalLM
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    if threads:
        torch.set_num_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    bar = getattr(gguf_utils, "tqdm", None)
    gguf_utils.tqdm = lambda it, *a, **k: it  # the GGUF reader's own tqdm bar would break ours
    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    finally:
        if bar is not None:
            gguf_utils.tqdm = bar
    model.eval()
    return model


def lora_layers(n_layers: int, fraction: float) -> list[int]:
    k = max(1, math.ceil(n_layers * fraction))
    return list(range(n_layers - k, n_layers))


def with_lora(model, s: TrainSettings):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=s.rank, lora_alpha=s.alpha, lora_dropout=s.dropout, target_modules=list(s.targets),
                     layers_to_transform=lora_layers(model.config.num_hidden_layers, s.layers), bias="none")
    import warnings

    torch = _torch()
    torch.manual_seed(s.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft calls a renamed transformers method
        return get_peft_model(model, cfg)


def label_logits(model, ex: Example):
    """The label tokens' logits at the answer position (one forward pass, last position only)."""
    torch = _torch()
    ids = torch.tensor([ex.tokens], dtype=torch.long)
    out = model(input_ids=ids, logits_to_keep=1)
    return out.logits[0, -1, ex.label_tokens]


def pool_ranks(model, examples: Sequence[Example]) -> list[int]:
    """The target's 1-based rank by label logits in each example that has one."""
    torch = _torch()
    ranks = []
    model.eval()
    with torch.no_grad():
        for ex in examples:
            if ex.target is None:
                continue
            z = label_logits(model, ex)
            ranks.append(int((z > z[ex.target]).sum().item()) + 1)
    return ranks


def trainable_state(model) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class Trainer:
    """Trains a LoRA on ``examples``, resuming from ``out/checkpoint.pt``; keeps the best chunk's
    weights by validation NDCG@10 inside the pool (``out/best.pt``), the start counting as a chunk."""

    def __init__(self, model, out: Path, settings: TrainSettings, validation: Sequence[Example] = (),
                 log: Callable[[dict], None] | None = None):
        self.torch = _torch()
        self.model = model
        self.out = out
        self.s = settings
        self.validation = list(validation)
        self.log = log or (lambda row: None)
        params = [p for p in model.parameters() if p.requires_grad]
        self.opt = self.torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
        self.state: dict[str, Any] = {"done": 0, "steps": 0, "seconds": 0.0, "losses": [], "best": None,
                                      "validations": []}

    # -- persistence ----------------------------------------------------------------------------
    def resume(self) -> bool:
        path = self.out / CHECKPOINT
        if not path.exists():
            return False
        ck = self.torch.load(path, weights_only=False)
        self.model.load_state_dict(ck["lora"], strict=False)
        self.opt.load_state_dict(ck["opt"])
        self.state = ck["state"]
        return True

    def _save(self, name: str, extra: dict | None = None) -> None:
        tmp = self.out / (name + ".tmp")
        self.torch.save({"lora": trainable_state(self.model), "opt": self.opt.state_dict(), "state": self.state,
                         **(extra or {})}, tmp)
        tmp.replace(self.out / name)

    def _append_log(self, row: dict) -> None:
        with open(self.out / LOG, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        self.log(row)

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> float | None:
        if not self.validation:
            return None
        t0 = time.perf_counter()
        ndcg = ndcg_in_pool(pool_ranks(self.model, self.validation))
        row = {"event": "validation", "examples": self.state["done"], "ndcg@10_in_pool": round(ndcg, 4),
               "users_in_pool": sum(e.target is not None for e in self.validation),
               "seconds": round(time.perf_counter() - t0, 1)}
        self.state["validations"].append(row)
        self._append_log(row)
        best = self.state["best"]
        if best is None or ndcg > best["ndcg@10_in_pool"]:
            self.state["best"] = {"examples": self.state["done"], "ndcg@10_in_pool": ndcg}
            self._save(BEST)
        return ndcg

    # -- training -------------------------------------------------------------------------------
    def lr_at(self, step: int, total_steps: int) -> float:
        warm = max(1, int(self.s.warmup * total_steps))
        if step < warm:
            return self.s.lr * (step + 1) / warm
        return self.s.lr * max(0.0, (total_steps - step) / max(1, total_steps - warm))

    def train(self, examples: Sequence[Example], time_budget_s: float | None = None,
              progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Train until every epoch is done or the time budget is spent; returns the state."""
        torch = self.torch
        n = len(examples)
        total = n * self.s.epochs
        total_steps = max(1, math.ceil(total / self.s.batch))
        orders = []
        for e in range(self.s.epochs):
            order = list(range(n))
            random.Random(self.s.seed + e).shuffle(order)
            orders += order
        if self.state["done"] == 0 and not self.state["validations"]:
            self.validate()  # the base model's own order: the number to beat
        started = time.perf_counter() - self.state["seconds"]
        while self.state["done"] < total:
            if time_budget_s is not None and time.perf_counter() - started > time_budget_s:
                self._append_log({"event": "stopped", "reason": "time budget", "examples": self.state["done"]})
                break
            self.model.train()
            batch = orders[self.state["done"]: self.state["done"] + self.s.batch]
            lr = self.lr_at(self.state["steps"], total_steps)
            for g in self.opt.param_groups:
                g["lr"] = lr
            loss_sum = 0.0
            for i in batch:
                ex = examples[i]
                z = label_logits(self.model, ex)
                loss = torch.nn.functional.cross_entropy(z.unsqueeze(0), torch.tensor([ex.target]))
                (loss / len(batch)).backward()
                loss_sum += loss.item()
                if progress:
                    progress(1)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            before = self.state["done"]
            self.state["done"] += len(batch)
            self.state["steps"] += 1
            self.state["seconds"] = time.perf_counter() - started
            self.state["losses"].append(loss_sum / len(batch))
            self._append_log({"event": "step", "step": self.state["steps"], "examples": self.state["done"],
                              "loss": round(loss_sum / len(batch), 4), "lr": lr,
                              "seconds": round(self.state["seconds"], 1)})
            if self.state["done"] // self.s.chunk > before // self.s.chunk or self.state["done"] >= total:
                self.validate()
                self._save(CHECKPOINT)
        self.state["seconds"] = time.perf_counter() - started
        self._save(CHECKPOINT)
        return self.state

    def best_weights(self) -> dict[str, Any]:
        """The best validated chunk's LoRA weights (the last ones when nothing was validated)."""
        path = self.out / BEST
        if path.exists():
            return self.torch.load(path, weights_only=False)["lora"]
        return trainable_state(self.model)
