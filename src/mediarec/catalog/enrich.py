"""Item summaries for thin catalog entries, written once by the LLM and kept on disk.

Items with little text (no description and few tags, like MovieLens films) embed poorly. For
each of them ``enrich_catalog`` asks the LLM once for a neutral one-paragraph summary (the
``summary`` prompt) and appends it to ``$MEDIAREC_HOME/enrich/<catalog>.jsonl``, one JSON line per
item, as soon as it is written: an interrupted run resumes where it stopped and a repeated one
does nothing. ``apply_summaries(catalog)`` returns the catalog with those summaries as the thin
items' descriptions, so the text index's fingerprint changes and the text side is re-embedded.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from pydantic import BaseModel

from mediarec.catalog.model import Catalog, Item
from mediarec.config import Settings, get_settings
from mediarec.errors import MediarecError
from mediarec.infra.progress import counting
from mediarec.llm.base import LLM, LLMUnavailable
from mediarec.rank.prompts import PromptLibrary

MIN_TAGS = 3
MIN_DESCRIPTION_CHARS = 40
SUMMARY_MAX_CHARS = 700


class EnrichReport(BaseModel):
    path: str
    thin: int
    already: int
    written: int
    failed: int
    seconds: float = 0.0


def is_thin(item: Item, min_tags: int = MIN_TAGS, min_description_chars: int = MIN_DESCRIPTION_CHARS) -> bool:
    """Little to embed: no (real) description and fewer than ``min_tags`` tags."""
    return len(item.description.strip()) < min_description_chars and len(item.tags) < min_tags


def enrich_path(catalog_name: str, settings: Settings | None = None) -> Path:
    settings = settings or get_settings()
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", catalog_name).strip("-.") or "catalog"
    return Path(settings.home) / "enrich" / f"{safe}.jsonl"


def load_summaries(path: str | Path) -> dict[str, str]:
    """id -> summary from an enrich file; a torn last line (an interrupted write) is ignored."""
    p = Path(path)
    out: dict[str, str] = {}
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    except OSError as e:
        raise MediarecError(f"cannot read {p}: {e.strerror or e}") from None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("id"), str) and isinstance(rec.get("summary"), str):
            s = rec["summary"].strip()
            if s:
                out[rec["id"]] = s
    return out


def clean_summary(text: str) -> str:
    """One plain paragraph: no code fences, heading, surrounding quotes or runs of whitespace."""
    t = (text or "").strip()
    t = re.sub(r"^```\w*|```$", "", t).strip()
    t = re.sub(r"^(?:summary|description)\s*:\s*", "", t, flags=re.I)
    t = " ".join(t.split()).strip("\"'“” ")
    if t and t[-1] not in ".!?…":  # cut off by the token limit: keep the whole sentences
        end = max(t.rfind(". "), t.rfind("! "), t.rfind("? "))
        if end > len(t) // 3:
            t = t[: end + 1]
    if len(t) > SUMMARY_MAX_CHARS:
        cut = t[:SUMMARY_MAX_CHARS]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        t = cut[: end + 1] if end > SUMMARY_MAX_CHARS // 2 else cut.rstrip() + "…"
    return t


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


def _repair_tail(p: Path) -> None:
    """End an interrupted file with a newline, so the next record starts on its own line."""
    try:
        with open(p, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
    except FileNotFoundError:
        return
    if last != b"\n":
        with open(p, "ab") as f:
            f.write(b"\n")


def apply_summaries(catalog: Catalog, path: str | Path | None = None, settings: Settings | None = None,
                    min_tags: int = MIN_TAGS) -> Catalog:
    """The catalog with stored summaries as the descriptions of its thin items.

    Items that are not thin keep their own text; with no stored summaries the catalog itself is
    returned. The result has another items fingerprint, so its text index is re-embedded, and
    ``summarised_items`` says how many items carry a summary.
    """
    p = Path(path) if path is not None else enrich_path(catalog.name, settings)
    summaries = load_summaries(p)
    if not summaries:
        return catalog
    items, changed = [], 0
    for iid, it in catalog.items.items():
        s = summaries.get(iid)
        if s and is_thin(it, min_tags):
            it = it.model_copy(update={"description": s})
            changed += 1
        items.append(it)
    if not changed:
        return catalog
    return catalog.replace(items=items, summarised_items=changed)
