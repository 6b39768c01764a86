"""The small demo catalog bundled as package data (``mediarec/catalog/demo/``), in the generic format."""

from __future__ import annotations

from mediarec.catalog.loaders.generic import load_generic
from mediarec.catalog.model import Catalog
from mediarec.errors import CatalogError

def demo_dir():
    from importlib.resources import files

    return files("mediarec.catalog") / "demo"


def load_demo() -> Catalog:
    """The small bundled demo catalog (``mediarec/catalog/demo/items.jsonl`` + ``interactions.jsonl``)."""
    from importlib.resources import as_file

    d = demo_dir()
    items_res, inter_res = d / "items.jsonl", d / "interactions.jsonl"
    if not items_res.is_file():
        raise CatalogError("the bundled demo data is missing from this installation (reinstall mediarec)",
                           str(items_res))
    with as_file(items_res) as ip:
        if inter_res.is_file():
            with as_file(inter_res) as xp:
                return load_generic(ip, xp, name="demo")
        return load_generic(ip, None, name="demo")

