"""The catalog: items, interactions, the loaders that read them and the registry of datasets.

First stop of the data path: catalog → index → candidates → prompt → LLM → parsed ranking → scores.

* :mod:`.model` -- ``Item``, ``Interaction``, the immutable ``Catalog``
* :mod:`.titles` -- title cleaning and the matching key
* :mod:`.validate` -- row reading and checks shared by the loaders
* :mod:`.loaders` -- one module per source format (MovieLens, Last.fm, generic, demo)
* :mod:`.registry` -- datasets by name; :mod:`.fetch` -- downloading them
* :mod:`.enrich` -- LLM-written summaries for thin items
* :mod:`.own` -- your own files registered by name; :mod:`.feedback` -- the chat feedback log;
  :mod:`.forget` -- forgetting a person
"""

from mediarec.catalog.fetch import fetch_dataset
from mediarec.catalog.loaders.demo import load_demo
from mediarec.catalog.loaders.generic import load_generic, write_generic
from mediarec.catalog.loaders.lastfm import load_lastfm_2k
from mediarec.catalog.loaders.movielens import load_movielens_100k, load_movielens_latest_small
from mediarec.catalog.model import Catalog, Interaction, Item
from mediarec.catalog.registry import DATASETS, DatasetInfo, dataset_path, load_dataset, resolve_dataset_name
from mediarec.catalog.titles import clean_title, normalize_title
from mediarec.catalog.validate import DatasetWarning

__all__ = [
    "DATASETS", "Catalog", "DatasetInfo", "DatasetWarning", "Interaction", "Item", "clean_title",
    "dataset_path", "fetch_dataset", "load_dataset", "load_demo", "load_generic", "load_lastfm_2k",
    "load_movielens_100k", "load_movielens_latest_small", "normalize_title", "resolve_dataset_name",
    "write_generic",
]
