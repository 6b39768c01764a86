"""mediarec: an LLM-prompted recommender agent for films, series and music."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Recommender", "RecommendationResult", "Catalog", "Item", "Interaction", "__version__"]


def __getattr__(name):  # imported lazily: `import mediarec` stays cheap for the CLI
    if name in ("Recommender", "RecommendationResult"):
        from . import agent

        return getattr(agent, name)
    if name in ("Catalog", "Item", "Interaction"):
        from . import catalog

        return getattr(catalog, name)
    raise AttributeError(name)
