"""The composition root: the only package that wires every layer together (see docs/architecture.md).

``from_catalog`` / ``from_dataset`` assemble a served :class:`~mediarec.recommender.Recommender`;
``update`` grows one in place (``mediarec add``); ``background`` is the detached refit and retrain
job; ``forget`` removes a person. The CLI is a thin layer over these.
"""

from mediarec.app.compose import from_catalog, from_dataset
from mediarec.app.update import add_interactions, add_items

__all__ = ["from_catalog", "from_dataset", "add_items", "add_interactions"]
