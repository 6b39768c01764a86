"""File and collection names derived from a catalog's name: one place, so every store agrees."""

from __future__ import annotations

import re


def safe_file_name(name: str) -> str:
    """A catalog name as a file name (tuned choices, learned models, job locks)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "catalog"


def safe_collection_prefix(name: str) -> str:
    """A valid Chroma collection name prefix (3-63 chars, alphanumerics, '.', '_', '-')."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._") or "catalog"
    return s[:50] if len(s) >= 3 else (s + "-cat")
