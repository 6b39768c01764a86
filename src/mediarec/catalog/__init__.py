"""The catalog: items, interactions, the loaders that read them and the registry of datasets.

First stop of the data path: catalog → index → candidates → prompt → LLM → parsed ranking → scores.
"""

from mediarec.catalog.model import Catalog, Interaction, Item

__all__ = ["Catalog", "Interaction", "Item"]
