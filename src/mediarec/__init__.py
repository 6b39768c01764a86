"""mediarec: an LLM-prompted recommender agent for films, series and music."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["from_dataset", "from_catalog", "Recommender", "RecommendationResult", "Catalog", "Item", "Interaction",
           "__version__"]


def __getattr__(name):  # imported lazily: `import mediarec` stays cheap for the CLI
    if name in ("from_dataset", "from_catalog"):  # the composition root assembles a served Recommender
        from mediarec import app

        return getattr(app, name)
    if name == "Recommender":
        from mediarec.recommender import Recommender

        return Recommender
    if name == "RecommendationResult":
        from mediarec.rank.result import RecommendationResult

        return RecommendationResult
    if name in ("Catalog", "Item", "Interaction"):
        from mediarec.catalog import model

        return getattr(model, name)
    raise AttributeError(name)
