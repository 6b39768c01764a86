"""``mediarec train``: examples from the split's training part -> LoRA -> GGUF adapter + manifest.

The output directory is the run's whole state: ``examples.jsonl`` and ``validation.jsonl`` (built
once, reused on resume), ``checkpoint.pt`` / ``best.pt``, ``train_log.jsonl`` (every step's loss,
every chunk's validation), and at the end ``adapter.gguf`` and ``manifest.json``. Running the same
command again resumes; a finished run is only exported again.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mediarec.errors import ConfigError
from mediarec.llm.adapter import ADAPTER_FILE, AdapterManifest, sha256_file, write_manifest
from mediarec.rank.reranker import prompt_hash
from mediarec.train.examples import (ExampleSettings, PromptTokenizer, load_examples, ndcg_in_pool, save_examples,
                                     training_examples, validation_examples)
from mediarec.train.lora import Trainer, TrainSettings

RUN = "run.json"


def run_train(args) -> int:
    from rich.console import Console

    from mediarec.catalog import load_dataset
    from mediarec.eval.run import make_protocol
    from mediarec.eval.split import leave_last_out, protocol_catalog, sample_users
    from mediarec.eval.systems import IndexProvider, retrieval_system
    from mediarec.infra.progress import progress_bar
    from mediarec.llm import load_llm
    from mediarec.rank.prompts import PromptLibrary

    con = Console(stderr=True)
    # --quiet: no progress or per-step lines; resuming, stopping and the adapter written still print
    say = (lambda *a, **k: None) if args.quiet else con.print
    out = Path(args.output).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    llm = load_llm(args.llm, cache=False)
    if llm is None or not getattr(llm, "is_local", False):
        raise ConfigError("training needs a local model: --llm local:NAME or local:/path.gguf")
    ex_settings = ExampleSettings(examples=args.examples, max_history=args.max_history, seed=args.seed,
                                  order=getattr(args, "order", "shuffled"))
    tr_settings = TrainSettings(epochs=args.epochs, lr=args.lr, batch=args.batch, chunk=args.chunk,
                                layers=args.layers, threads=args.threads, seed=args.seed)
    prompts = PromptLibrary()
    loaded = load_dataset(args.dataset, args.data_dir)
    args.users = None
    protocol = make_protocol(args, loaded.name)
    catalog = protocol_catalog(loaded, protocol)
    identity = {"catalog": catalog.name, "items_fingerprint": catalog.items_fingerprint(),
                "protocol": protocol.name, "base_model": llm.model_name, "base_sha256": llm.model_sha256(),
                "prompt_hash": prompt_hash(prompts), "examples": ex_settings.model_dump(),
                "val_users": args.val_users}
    run_file = out / RUN
    if run_file.exists():
        before = json.loads(run_file.read_text(encoding="utf-8"))
        changed = [k for k in identity if before.get("identity", {}).get(k) != identity[k]]
        if changed:
            raise ConfigError(f"{out} holds a training run with other {', '.join(changed)}; use another --output")
    from mediarec.infra.atomic import atomic_write_text  # whole or not there: a resumed run reads it

    atomic_write_text(run_file, json.dumps({"identity": identity, "train": tr_settings.model_dump()}, indent=2) + "\n")

    split = leave_last_out(catalog)
    train = split.train_catalog  # neither the validation nor the test targets
    tokenizer = PromptTokenizer(llm)
    ex_path, val_path = out / "examples.jsonl", out / "validation.jsonl"
    if not (ex_path.exists() and val_path.exists()):
        say(f"building {ex_settings.examples} training prompts from {train.name}'s training histories")
        retriever = retrieval_system("hybrid", IndexProvider(progress=not args.quiet))
        retriever.fit(train)
        ids = retriever.item_ids
        with progress_bar("training prompts", ex_settings.examples, enabled=not args.quiet) as advance:
            held = {u: {split.test[u], *([split.valid[u]] if u in split.valid else [])} for u in split.test}
            examples = training_examples(train, retriever.score_array, ids, tokenizer, ex_settings, prompts,
                                         progress=advance, held_out=held)
        val_users = sample_users(split.valid_history, args.val_users, args.seed)
        validation = validation_examples({u: split.valid_history[u] for u in val_users},
                                         {u: split.valid[u] for u in val_users}, train, retriever.score_array, ids,
                                         tokenizer, ex_settings, prompts)
        save_examples(val_path, validation)
        save_examples(ex_path, examples)
    examples, validation = load_examples(ex_path), load_examples(val_path)
    in_pool = [e for e in validation if e.target is not None]
    retrieval_ndcg = ndcg_in_pool([e.retrieval_rank for e in in_pool])
    tokens = sum(len(e.tokens) for e in examples) / max(1, len(examples))
    say(f"{len(examples)} training prompts ({tokens:.0f} tokens on average; the target retrieved in "
        f"{sum(e.retrieval_rank is not None for e in examples)}), {len(validation)} validation users "
        f"({len(in_pool)} with the target in the pool; retrieval order NDCG@10 there {retrieval_ndcg:.4f})")

    from mediarec.train.lora import load_base, with_lora

    say(f"loading {llm.model_name} for training (dequantised, fp32)")
    model = with_lora(load_base(Path(llm.path), tr_settings.threads), tr_settings)

    def log(row: dict) -> None:
        if row["event"] == "validation":
            say(f"validation after {row['examples']} examples: NDCG@10 inside the pool "
                f"{row['ndcg@10_in_pool']:.4f} (retrieval order {retrieval_ndcg:.4f}) [{row['seconds']} s]")
        elif row["event"] == "step" and row["step"] % 10 == 0:
            say(f"step {row['step']}: loss {row['loss']:.3f} ({row['examples']} examples, {row['seconds']:.0f} s)")
        elif row["event"] == "stopped":
            con.print(f"stopped after {row['examples']} examples: {row['reason']}; run the same command to resume")

    trainer = Trainer(model, out, tr_settings, in_pool, log=log)
    if trainer.resume():
        con.print(f"resuming after {trainer.state['done']} examples ({trainer.state['seconds']:.0f} s so far)")
    total = len(examples) * tr_settings.epochs
    budget = args.time_budget * 60 if args.time_budget else None
    t0 = time.perf_counter()
    with progress_bar("training", total, enabled=not args.quiet, completed=trainer.state["done"]) as advance:
        state = trainer.train(examples, budget, progress=advance)
    finished = state["done"] >= total
    results = _results(state, retrieval_ndcg, len(in_pool), len(examples), time.perf_counter() - t0, finished)
    path = export(trainer, out, llm, identity, tr_settings, results)
    best = state["best"] or {}
    con.print(f"wrote {path} (best validation NDCG@10 inside the pool {best.get('ndcg@10_in_pool', 0):.4f} "
              f"after {best.get('examples', 0)} examples; retrieval order {retrieval_ndcg:.4f})")
    if not finished:
        con.print(f"not finished: {state['done']} of {total} examples; run the same command to go on")
    return 0


def _results(state: dict, retrieval_ndcg: float, in_pool: int, n_examples: int, seconds: float,
             finished: bool) -> dict[str, Any]:
    vals = state["validations"]
    return {"examples_done": state["done"], "examples": n_examples, "finished": finished,
            "seconds": round(state["seconds"], 1), "seconds_this_run": round(seconds, 1),
            "seconds_per_example": round(state["seconds"] / max(1, state["done"]), 2),
            "final_loss": round(sum(state["losses"][-10:]) / max(1, len(state["losses"][-10:])), 4)
            if state["losses"] else None,
            "first_loss": round(sum(state["losses"][:10]) / max(1, len(state["losses"][:10])), 4)
            if state["losses"] else None,
            "validation_users_in_pool": in_pool, "retrieval_ndcg@10_in_pool": round(retrieval_ndcg, 4),
            "zero_shot_ndcg@10_in_pool": vals[0]["ndcg@10_in_pool"] if vals else None,
            "best": state["best"], "validations": vals}


def export(trainer: Trainer, out: Path, llm, identity: dict, settings: TrainSettings, results: dict) -> Path:
    """The best chunk's weights as ``adapter.gguf`` plus the manifest that ranking checks."""
    from mediarec.train.export import base_architecture, write_adapter

    cfg = trainer.model.config
    arch = base_architecture(Path(llm.path))
    path = write_adapter(out / ADAPTER_FILE, trainer.best_weights(), arch, settings.alpha,
                         cfg.num_attention_heads, getattr(cfg, "num_key_value_heads", cfg.num_attention_heads))
    manifest = AdapterManifest(base_model=identity["base_model"], base_sha256=identity["base_sha256"],
                               architecture=arch, catalog=identity["catalog"],
                               items_fingerprint=identity["items_fingerprint"], prompt_hash=identity["prompt_hash"],
                               adapter_sha256=sha256_file(path),
                               settings={"train": settings.model_dump(), "examples": identity["examples"],
                                         "protocol": identity["protocol"], "val_users": identity["val_users"]},
                               results=results)
    write_manifest(out, manifest)
    return path
