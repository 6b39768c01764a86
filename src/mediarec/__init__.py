"""mediarec: an LLM-prompted recommender agent for films, series and music."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Recommender", "RecommendationResult", "Catalog", "Item", "Interaction", "__version__"]


def __getattr__(name):  # imported lazily: `import mediarec` stays cheap for the CLI
    if name == "Recommender":
        from mediarec.recommender import Recommender

        return Recommender
    if name == "RecommendationResult":
        from mediarec.recommendation import RecommendationResult

        return RecommendationResult
    if name in ("Catalog", "Item", "Interaction"):
        from mediarec.catalog import model

        return getattr(model, name)
    raise AttributeError(name)
