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
from pathlib import Path


from mediarec.catalog.model import Catalog, Item
from mediarec.config import Settings, get_settings
from mediarec.errors import MediarecError

MIN_TAGS = 3
MIN_DESCRIPTION_CHARS = 40
SUMMARY_MAX_CHARS = 700


def is_thin(item: Item, min_tags: int = MIN_TAGS, min_description_chars: int = MIN_DESCRIPTION_CHARS) -> bool:
    """Little to embed: no (real) description and fewer than ``min_tags`` tags."""
    return len(item.description.strip()) < min_description_chars and len(item.tags) < min_tags


def enrich_path(catalog_name: str, settings: Settings | None = None) -> Path:
    return (settings or get_settings()).layout.summaries(catalog_name)


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
