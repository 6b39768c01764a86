"""Assembling the product: a served :class:`~mediarec.recommender.Recommender` from a catalog.

This is the one place that knows every layer: the index (built when missing), the choices stored
by validation (``mediarec tune``, ``mediarec eval``), the LLM and its adapter check, the learned
stage (trained when missing), and the background job that refits and retrains after ``mediarec
add``. The layers below take what they need as arguments and never import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mediarec.catalog import Catalog, load_dataset
from mediarec.catalog.enrich import apply_summaries
from mediarec.config import Settings, get_settings
from mediarec.errors import ConfigError
from mediarec.index.seq import SeqSource
from mediarec.index.store import IndexSettings, open_index
from mediarec.index.tuning import stored_choice, tuned_path
from mediarec.llm import load_llm
from mediarec.catalog.model import repeat_policy
from mediarec.rank.learned import LearnedSettings
from mediarec.rank.prompts import PromptLibrary
from mediarec.rank.reranker import RerankSettings, prompt_hash
from mediarec.rank.tuned import stored_llm_choice
from mediarec.recommender import Recommender


def from_catalog(catalog: Catalog, llm: str | None = None, chroma_url: str | None = None,
                 settings: Settings | None = None, progress: bool = False,
                 prompts_dir: str | Path | None = None, index_settings: IndexSettings | None = None,
                 adapter: str | Path | None = None, previous_fit: bool = True, seq: str = "auto",
                 train_seq: bool = False, **kw: Any) -> Recommender:
    """The product over ``catalog``: its index (built when missing), the stored validation choices,
    the learned stage (trained when missing, unless ``train_second_stage=False``), and the LLM
    ``llm`` (a spec), with a ``mediarec train`` adapter if given. ``previous_fit``: while a
    background collaborative refit is pending, the previous fit serves (:mod:`mediarec.index.pending`);
    False fits in the foreground (``mediarec index``). ``seq``: the sequential model, "auto" (where
    the catalog is large enough, :data:`mediarec.index.seq.MIN_INTERACTIONS`), "on" or "off";
    ``train_seq``: train it when none is stored (``mediarec index``), else only a stored one serves.
    Other keywords go to :class:`Recommender`."""
    from mediarec.app.background import start

    settings = settings or get_settings()
    spec = llm if llm is not None else settings.llm
    prompts = PromptLibrary(prompts_dir)
    if adapter is not None:
        if not spec or not (spec.startswith("local:") or spec.endswith(".gguf")):
            raise ConfigError("--adapter needs a local model (--llm local:NAME)")
        backend = load_llm(spec, settings, adapter=adapter, catalog=catalog.name, prompt_hash=prompt_hash(prompts))
    else:
        backend = load_llm(spec, settings, cache_scope=catalog.name)
    if backend is not None:
        backend.prepare()  # a model that is missing is pulled (or fails) here, not in the first answer
    index = open_index(catalog, settings, chroma_url=chroma_url, build=True, progress=progress,
                       index_settings=index_settings, previous_fit=previous_fit)
    may_train = kw.get("train_second_stage", True)
    if index.collab_pending and may_train:  # an interrupted refit: start it again
        start(catalog.name, settings.home, chroma_url)
    # What validation chose for this catalog serves, and the result says so.
    sources = {"collab": "given" if index_settings is not None else
               f"tuned on validation users ({tuned_path(catalog.name, settings.home)})"
               if stored_choice(catalog, settings.home) else "defaults"}
    # A log that replays its items (music, series) allows them back by default (issue 28): the
    # learned stage is then trained that way, with the re-consumption features.
    kw.setdefault("include_seen", repeat_policy(catalog) == "allow")
    kw.setdefault("second_stage", LearnedSettings(include_seen=kw["include_seen"]))
    kw.setdefault("home", settings.home)
    kw.setdefault("progress", progress)
    kw.setdefault("retrain_job", lambda name: start(name, settings.home))
    if "seq" not in kw:
        import sys

        note = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else None
        kw["seq"] = SeqSource(settings.home, mode=seq, progress=progress, summary=note, may_train=train_seq)
    if backend is not None:
        hit = stored_llm_choice(catalog, backend.spec, settings.home) if "rerank" not in kw else None
        if hit is not None:
            weight, history, where = hit
            kw["rerank"] = RerankSettings(llm_weight=weight, **({"max_history": history} if history else {}))
            sources["llm_weight"] = f"chosen on validation users ({where})"
            if history:
                sources["history_cut"] = f"chosen on validation users ({where})"
        else:
            sources["llm_weight"] = "given" if "rerank" in kw else "default (no validation choice stored)"
    rec = Recommender(llm=backend, prompts=prompts, sources=sources, **kw)
    rec.serve(catalog, index, train=True, restart_retrain=True)
    return rec


def from_dataset(name: str = "demo", data_dir: str | Path | None = None, settings: Settings | None = None,
                 **kw: Any) -> Recommender:
    """:func:`from_catalog` over a registered dataset (built in, fetched, or your own files by name),
    with its stored ``mediarec enrich`` summaries."""
    return from_catalog(apply_summaries(load_dataset(name, data_dir), settings=settings), settings=settings, **kw)
