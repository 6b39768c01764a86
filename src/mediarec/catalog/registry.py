"""The datasets mediarec knows by name: where each lives under the data folder, where it comes
from, and how to load it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mediarec.catalog.loaders.demo import demo_dir, load_demo
from mediarec.catalog.loaders.lastfm import load_lastfm_2k
from mediarec.catalog.loaders.movielens import load_movielens_1m, load_movielens_100k, load_movielens_latest_small
from mediarec.catalog.model import Catalog
from mediarec.catalog.validate import PathLike
from mediarec.config import get_settings
from mediarec.errors import CatalogError

def _has(*names: str) -> Callable[[Path], bool]:
    return lambda p: all((p / n).is_file() for n in names)


def _latest_present(p: Path) -> bool:
    if p.is_file():
        return p.suffix.lower() == ".zip"
    return ((p / "movies.csv").is_file() and (p / "ratings.csv").is_file()) or \
        (p / "ml-latest-small.zip").is_file()


@dataclass(frozen=True)
class DatasetInfo:
    """One loadable dataset: where it lives under a data dir and where it comes from."""

    name: str
    loader: Callable[..., Catalog]
    description: str
    folder: str | None = None          # folder name under data_dir
    url: str | None = None             # the publisher's archive
    sha256: str | None = None          # pinned archive digest; None = record and print it
    aliases: tuple[str, ...] = ()
    present: Callable[[Path], bool] = field(default=lambda p: False, repr=False)
    licence: str = ""

    @property
    def archive(self) -> str | None:
        return self.url.rsplit("/", 1)[-1] if self.url else None


_GL = "https://files.grouplens.org/datasets"

DATASETS: dict[str, DatasetInfo] = {
    "demo": DatasetInfo(
        name="demo", loader=lambda path=None: load_demo(),
        description="a small bundled catalog of films, series and music for trying mediarec out"),
    "movielens-100k": DatasetInfo(
        name="movielens-100k", loader=load_movielens_100k, folder="ml-100k",
        url=f"{_GL}/movielens/ml-100k.zip", sha256=None, aliases=("ml-100k",),
        present=_has("u.data", "u.item"),
        description="MovieLens 100k: 100,000 ratings by 943 users of 1,682 movies (1998)",
        licence="GroupLens research licence; no redistribution"),
    "movielens-1m": DatasetInfo(
        name="movielens-1m", loader=load_movielens_1m, folder="ml-1m",
        url=f"{_GL}/movielens/ml-1m.zip", sha256=None, aliases=("ml-1m",),
        present=lambda p: (p / "movies.dat").is_file() and any(
            (p / n).is_file() for n in ("ratings.dat", "lrurec-sequences.tsv")),
        description="MovieLens 1M: 1,000,209 ratings by 6,040 users of 3,706 movies (ratings.dat), or "
                    "LRURec's preprocessed sequences (lrurec-sequences.tsv: 999,611 of 3,416 movies)",
        licence="GroupLens research licence; no redistribution"),
    "movielens-latest-small": DatasetInfo(
        name="movielens-latest-small", loader=load_movielens_latest_small, folder="ml-latest-small",
        url=f"{_GL}/movielens/ml-latest-small.zip",
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        aliases=("ml-latest-small",), present=_latest_present,
        description="MovieLens latest-small: 100,836 ratings and 3,683 tags by 610 users of 9,742 movies",
        licence="GroupLens research licence; cite Harper & Konstan 2015"),
    "lastfm-2k": DatasetInfo(
        name="lastfm-2k", loader=load_lastfm_2k, folder="hetrec2011-lastfm-2k",
        url=f"{_GL}/hetrec2011/hetrec2011-lastfm-2k.zip", sha256=None,
        aliases=("hetrec2011-lastfm-2k",), present=_has("artists.dat", "user_artists.dat"),
        description="Last.fm hetrec-2k: play counts of 17,632 artists by 1,892 users, with tags",
        licence="non-commercial; cite Last.fm and HetRec'11"),
}


def resolve_dataset_name(name: str) -> DatasetInfo:
    """The dataset called ``name`` or one of its aliases (case-insensitive)."""
    key = str(name).strip().lower()
    for info in DATASETS.values():
        if key == info.name or key in info.aliases:
            return info
    from mediarec.catalog.own import registered_names

    known = ", ".join(f"{i.name}" + (f" ({', '.join(i.aliases)})" if i.aliases else "")
                      for i in DATASETS.values())
    own = registered_names()
    raise CatalogError(f"unknown dataset {name!r}; known: {known}"
                       + (f"; your catalogs: {', '.join(own)}" if own else "")
                       + "; register your own files with `mediarec index --items FILE [--interactions FILE] --name NAME`")


def data_folder(given: PathLike | None = None) -> Path:
    """The folder datasets live in: ``given``, else the settings' data dir."""
    return Path(given).expanduser() if given is not None else get_settings().data_dir


def dataset_path(name: str, data_dir: PathLike | None = None) -> Path:
    """Where dataset ``name`` is: ``data_dir/<folder>`` or ``data_dir`` itself if that is the
    dataset's own folder. Missing files are an error that says how to get them."""
    info = resolve_dataset_name(name)
    if info.folder is None:
        return Path(str(demo_dir()))
    base = data_folder(data_dir)
    for cand in (base / info.folder, base):
        if info.present(cand):
            return cand
    raise CatalogError(
        f"dataset {info.name!r} not found (looked in {base / info.folder} and {base}); "
        f"run `mediarec data fetch {info.name}` or pass --data-dir pointing at the folder that holds "
        f"{info.folder}/")


def load_dataset(name: str, data_dir: PathLike | None = None) -> Catalog:
    """Load a dataset by name or alias (see :data:`DATASETS`), or a catalog of your own files
    registered under that name (:mod:`mediarec.catalog.own`); without the interactions of people
    who asked to be forgotten (:mod:`mediarec.catalog.forgotten`)."""
    from mediarec.catalog.forgotten import drop_forgotten
    from mediarec.catalog.own import load_registered, registration

    own = None if _builtin(name) else registration(name)
    if own is not None:
        return drop_forgotten(load_registered(own))
    info = resolve_dataset_name(name)
    if info.folder is None:
        return drop_forgotten(load_demo())
    return drop_forgotten(info.loader(dataset_path(info.name, data_dir)))


def _builtin(name: str) -> bool:
    key = str(name).strip().lower()
    return any(key == i.name or key in i.aliases for i in DATASETS.values())

