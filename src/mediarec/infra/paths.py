"""Where everything lives under ``$MEDIAREC_HOME``, and the file names derived from a catalog's
name: the one module that names the folders, so every store (and ``mediarec forget``) agrees.

    models/       pinned model files            index/<catalog>/    Chroma and the item-item matrix
    cache/llm/catalogs/<catalog>/  LLM answers by prompt, one folder per catalog (a prompt carries a history)
    learned/      learned-stage models, locks   tuned/              choices made on validation
    catalogs/<name>/  your own catalogs         enrich/             LLM item summaries
    forgotten.json    people forgotten (digests) data/              fetched public datasets
    chat/<catalog>.history  the REPL's line history, one file per catalog
    serve/<catalog>/events.jsonl  events `mediarec serve` took for a built-in dataset
"""

from __future__ import annotations

import re
from pathlib import Path

FORGOTTEN = "forgotten.json"


def safe_file_name(name: str) -> str:
    """A catalog name as a file name (tuned choices, learned models, job locks, summaries)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "catalog"


def safe_collection_prefix(name: str) -> str:
    """A valid Chroma collection name prefix (3-63 chars, alphanumerics, '.', '_', '-')."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._") or "catalog"
    return s[:50] if len(s) >= 3 else (s + "-cat")


class Layout:
    """The folders and files of one home (``Settings.layout``)."""

    def __init__(self, home: str | Path):
        self.home = Path(home)

    models = property(lambda self: self.home / "models")
    index = property(lambda self: self.home / "index")
    cache = property(lambda self: self.home / "cache")
    llm_cache = property(lambda self: self.home / "cache" / "llm")
    data = property(lambda self: self.home / "data")
    learned = property(lambda self: self.home / "learned")
    tuned = property(lambda self: self.home / "tuned")
    catalogs = property(lambda self: self.home / "catalogs")
    enrich = property(lambda self: self.home / "enrich")
    forgotten = property(lambda self: self.home / FORGOTTEN)
    #: before answers and line histories were kept per catalog: still read by ``forget``, never written
    legacy_chat_history = property(lambda self: self.home / "chat_history")
    chat = property(lambda self: self.home / "chat")

    def chat_history(self, catalog_name: str) -> Path:
        """The REPL's line history for one catalog: what was typed about one catalog stays with it."""
        return self.chat / f"{safe_file_name(catalog_name)}.history"

    def llm_cache_of(self, catalog_name: str | None) -> Path:
        """The LLM answers of one catalog's prompts (None: prompts that belong to no catalog)."""
        if not catalog_name:
            return self.llm_cache / "unscoped"
        return self.llm_cache / "catalogs" / safe_file_name(catalog_name)

    def legacy_llm_caches(self) -> list[Path]:
        """Answer folders written before the cache was kept per catalog (and the unscoped one): any catalog's."""
        root = self.llm_cache
        return sorted(p for p in root.iterdir() if p.name != "catalogs") if root.is_dir() else []

    def learned_model(self, catalog_name: str, key: str) -> Path:
        return self.learned / f"{safe_file_name(catalog_name)}-{key}.json"

    def job_lock(self, catalog_name: str) -> Path:
        return self.learned / f"{safe_file_name(catalog_name)}.background.lock"

    def tuned_choice(self, catalog_name: str, variant: str | None = None) -> Path:
        suffix = f"@{safe_file_name(variant)}" if variant else ""
        return self.tuned / f"{safe_file_name(catalog_name)}{suffix}.json"

    def served_events(self, catalog_name: str) -> Path:
        """Events ``mediarec serve`` took for a built-in dataset (whose files are the publisher's)."""
        return self.home / "serve" / safe_file_name(catalog_name) / "events.jsonl"

    def summaries(self, catalog_name: str) -> Path:
        return self.enrich / f"{safe_file_name(catalog_name)}.jsonl"

    def index_dirs(self, catalog_name: str) -> list[Path]:
        """The index folders a catalog may have: its own and the evaluation's (plain, enriched)."""
        return [self.index / n for n in (catalog_name, f"{catalog_name}-eval", f"{catalog_name}-eval-enriched")]
