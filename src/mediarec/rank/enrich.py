"""Writing the item summaries (``mediarec enrich``): the LLM summarises each thin item once.

Storage, resuming and applying them to a catalog are :mod:`mediarec.catalog.enrich`'s; this is
the part that prompts the LLM.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel

from mediarec.catalog.enrich import MIN_TAGS, _repair_tail, clean_summary, enrich_path, is_thin, load_summaries
from mediarec.catalog.model import Catalog
from mediarec.config import Settings
from mediarec.errors import MediarecError
from mediarec.infra.progress import counting
from mediarec.llm.base import LLM, LLMUnavailable
from mediarec.rank.prompts import PromptLibrary


class EnrichReport(BaseModel):
    path: str
    thin: int
    already: int
    written: int
    failed: int
    seconds: float = 0.0


def enrich_catalog(catalog: Catalog, llm: LLM, prompts: PromptLibrary | None = None, *,
                   path: str | Path | None = None, limit: int | None = None, progress: bool = False,
                   settings: Settings | None = None, max_words: int = 40,
                   min_tags: int = MIN_TAGS) -> EnrichReport:
    """Write a summary for every thin item that has none yet (at most ``limit`` new ones)."""
    if llm is None:
        raise MediarecError("enriching needs an LLM: pass --llm local:NAME or openai:MODEL")
    if limit is not None and limit < 0:
        raise MediarecError("--limit must be 0 or more")
    prompts = prompts or PromptLibrary()
    p = Path(path) if path is not None else enrich_path(catalog.name, settings)
    done = load_summaries(p)
    thin = [it for it in catalog.items.values() if is_thin(it, min_tags)]
    todo = [it for it in thin if it.id not in done]
    if limit is not None:
        todo = todo[:limit]
    t0 = time.perf_counter()
    written = failed = 0
    if todo:
        p.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(p)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh, counting(progress) as bar:
            task = bar.add_task(f"summaries {catalog.name}", total=len(todo))
            for it in todo:
                msgs = prompts.render("summary", item=it, max_words=max_words)
                try:
                    comp = llm.chat(msgs, max_tokens=max_words * 3 // 2 + 10)  # ~1.3 tokens a word
                    summary = clean_summary(comp.text)
                except (LLMUnavailable, ValueError):
                    summary = ""
                if summary:
                    fh.write(json.dumps({"id": it.id, "summary": summary, "llm": llm.spec,
                                         "time": round(time.time(), 3)}, ensure_ascii=False) + "\n")
                    fh.flush()
                    written += 1
                else:
                    failed += 1  # not stored: the next run tries again
                bar.advance(task)
    return EnrichReport(path=str(p), thin=len(thin), already=sum(1 for i in thin if i.id in done),
                        written=written, failed=failed, seconds=time.perf_counter() - t0)
