"""MovieLens 100k (``u.data``, ``u.item``, ``u.genre``) and MovieLens latest-small (the zip, or its
CSVs): both give "movie" items with cleaned titles and "rating" interactions."""

from __future__ import annotations

import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path

from mediarec.catalog.model import Catalog, Interaction, Item
from mediarec.catalog.titles import clean_title
from mediarec.catalog.validate import (Checks, PathLike, csv_rows, decode_lenient, decode_strict_utf8,
                                       lines, make_item, new_interaction, read_bytes, split_fields,
                                       top_counts)
from mediarec.errors import CatalogError

_ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
                  "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                  "Romance", "Sci-Fi", "Thriller", "War", "Western")


def _id_and_title(raw_id: str, raw_title: str, seen: Mapping[str, object], noun: str, where: str,
                  n: int) -> tuple[str, str, int | None]:
    """(id, title, year) of one movie line: the id checked and new, the title not empty and read as
    people say it ("Matrix, The (1999)" -> "The Matrix", 1999). Errors name ``where`` and line ``n``."""
    item_id = Checks.ident(raw_id, noun, where, n)
    if item_id in seen:
        raise CatalogError(f"duplicate {noun} id {item_id!r}", where, n)
    if not raw_title.strip():
        raise CatalogError(f"empty title for {noun} {item_id!r}", where, n)
    title, year = clean_title(raw_title)
    return item_id, title, year


def _ml100k_genres(folder: Path) -> list[str]:
    path = folder / "u.genre"
    if not path.exists():
        return list(_ML100K_GENRES)
    where = str(path)
    by_index: dict[int, str] = {}
    for n, line in lines(decode_lenient(read_bytes(path))):
        if not line.strip():
            continue
        name, idx = split_fields(line, "|", 2, where, n, "genre line")
        i = Checks.integer(idx, "genre index", where, n)
        if i in by_index:
            raise CatalogError(f"duplicate genre index {i}", where, n)
        by_index[i] = name.strip()
    if sorted(by_index) != list(range(len(by_index))):
        raise CatalogError("genre indexes are not 0..n-1", where)
    return [by_index[i] for i in range(len(by_index))]


def load_movielens_100k(path: PathLike) -> Catalog:
    """MovieLens 100k from its folder (``u.data``, ``u.item``, ``u.genre``).

    Items: kind "movie", id = the movie id as a string, title/year split from "Title (1995)"
    with trailing articles moved to the front, genres from the 19 flags (names from ``u.genre``;
    the "unknown" genre is dropped), ``extra`` = imdb_url and release_date where given.
    Interactions: event "rating", rating 1..5, weight 1.0, timestamp = unix seconds.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise CatalogError("not a folder (expected the ml-100k folder with u.data and u.item)", folder)
    checks = Checks()
    genres = _ml100k_genres(folder)

    item_path = folder / "u.item"
    where = str(item_path)
    items: dict[str, Item] = {}
    for n, line in lines(read_bytes(item_path).decode("latin-1")):
        if not line.strip():
            continue
        f = split_fields(line, "|", 5 + len(genres), where, n, "item line")
        item_id, title, year = _id_and_title(f[0], f[1], items, "item", where, n)
        release = f[2].strip()
        if year is None and release:
            m = re.search(r"(\d{4})$", release)
            year = int(m.group(1)) if m else None
        flags = f[5:]
        bad = [x for x in flags if x not in ("0", "1")]
        if bad:
            raise CatalogError(f"genre flag {bad[0]!r} is not 0 or 1", where, n)
        item_genres = tuple(g for g, x in zip(genres, flags) if x == "1" and g.lower() != "unknown")
        extra = {}
        if f[4].strip():
            extra["imdb_url"] = f[4].strip()
        if release:
            extra["release_date"] = release
        items[item_id] = make_item(where, n, id=item_id, title=title, kind="movie", year=year,
                                    genres=item_genres, extra=extra)

    data_path = folder / "u.data"
    where = str(data_path)
    interactions: list[Interaction] = []
    append = interactions.append
    for n, line in lines(decode_lenient(read_bytes(data_path))):
        if not line.strip():
            continue
        f = line.split("\t")
        if len(f) != 4:
            split_fields(line, "\t", 4, where, n, "rating line")
        user, item = f[0].strip(), f[1].strip()
        if not user or not item:
            raise CatalogError("empty user or item id", where, n)
        if item not in items:
            raise CatalogError(f"unknown item {item!r} (not in u.item)", where, n)
        rating = Checks.number(f[2], "rating", where, n, 0.0, 5.0)
        ts = checks.timestamp(f[3], where, n)
        append(new_interaction(user=user, item=item, timestamp=ts, rating=rating, weight=1.0,
                                event="rating"))
    return Catalog("movielens-100k", items.values(), interactions, source=str(folder),
                   load_stats={"items": len(items), "interactions": len(interactions)})



_LATEST_FILES = ("movies.csv", "ratings.csv", "tags.csv", "links.csv")


def _latest_sources(path: Path) -> dict[str, tuple[bytes, str]]:
    """{file name: (bytes, label)} from the zip, a folder holding the zip, or extracted CSVs."""
    zip_path: Path | None = None
    folder: Path | None = None
    if path.is_file():
        zip_path = path
    elif path.is_dir():
        for cand in (path, path / "ml-latest-small"):
            if (cand / "movies.csv").is_file():
                folder = cand
                break
        else:
            if (path / "ml-latest-small.zip").is_file():
                zip_path = path / "ml-latest-small.zip"
            else:
                zips = sorted(path.glob("*.zip"))
                if len(zips) == 1:
                    zip_path = zips[0]
    else:
        raise CatalogError("not found", path)

    out: dict[str, tuple[bytes, str]] = {}
    if folder is not None:
        for name in _LATEST_FILES:
            p = folder / name
            if p.is_file():
                out[name] = (read_bytes(p), str(p))
    elif zip_path is not None:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                members = {Path(m).name: m for m in zf.namelist() if not m.endswith("/")
                           and "__MACOSX" not in m}
                for name in _LATEST_FILES:
                    if name in members:
                        out[name] = (zf.read(members[name]), f"{zip_path}!/{members[name]}")
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as e:
            raise CatalogError(f"not a readable zip archive ({e}); fetch it again", zip_path) from None
    else:
        raise CatalogError("no movies.csv and no ml-latest-small.zip here", path)
    for name in ("movies.csv", "ratings.csv"):
        if name not in out:
            raise CatalogError(f"{name} is missing", zip_path or folder)
    return out


def load_movielens_latest_small(path: PathLike) -> Catalog:
    """MovieLens latest-small from ``ml-latest-small.zip``, a folder holding it, or a folder with
    the extracted CSVs (``movies.csv``, ``ratings.csv``; ``tags.csv`` and ``links.csv`` optional).

    Items: kind "movie", title/year/article handling as for 100k, genres split on "|"
    ("(no genres listed)" = none), tags = the up to 10 most frequent user tags (lowercased,
    deduplicated; ties alphabetical), ``extra`` = imdb_id ("tt…") and tmdb_id from links.csv.
    Interactions: event "rating", rating 0.5..5, weight 1.0, timestamp = unix seconds.
    Tags on movies that are not in movies.csv are skipped (counted in ``load_stats``).
    """
    p = Path(path)
    src = _latest_sources(p)
    checks = Checks()

    data, where = src["movies.csv"]
    header, rows = csv_rows(decode_strict_utf8(data, where), where,
                             ("movieId", "title", "genres"), "movies.csv")
    i_id, i_title, i_genres = header.index("movieId"), header.index("title"), header.index("genres")
    raw_items: dict[str, tuple[int, str, int | None, tuple[str, ...]]] = {}
    for n, row in rows:
        item_id, title, year = _id_and_title(row[i_id], row[i_title], raw_items, "movie", where, n)
        g = row[i_genres].strip()
        genres = () if g in ("", "(no genres listed)") else tuple(
            dict.fromkeys(x.strip() for x in g.split("|") if x.strip()))
        raw_items[item_id] = (n, title, year, genres)
    movies_where = where

    links: dict[str, dict[str, str]] = {}
    if "links.csv" in src:
        data, where = src["links.csv"]
        header, rows = csv_rows(decode_strict_utf8(data, where), where, ("movieId",), "links.csv")
        i_m = header.index("movieId")
        i_imdb = header.index("imdbId") if "imdbId" in header else None
        i_tmdb = header.index("tmdbId") if "tmdbId" in header else None
        for n, row in rows:
            extra = {}
            if i_imdb is not None and row[i_imdb].strip():
                extra["imdb_id"] = "tt" + row[i_imdb].strip()
            if i_tmdb is not None and row[i_tmdb].strip():
                extra["tmdb_id"] = row[i_tmdb].strip()
            links[row[i_m].strip()] = extra

    tag_counts: dict[str, Counter] = defaultdict(Counter)
    tags_skipped = 0
    if "tags.csv" in src:
        data, where = src["tags.csv"]
        header, rows = csv_rows(decode_strict_utf8(data, where), where,
                                 ("userId", "movieId", "tag"), "tags.csv")
        i_m, i_t = header.index("movieId"), header.index("tag")
        i_ts = header.index("timestamp") if "timestamp" in header else None
        for n, row in rows:
            if i_ts is not None:
                checks.timestamp(row[i_ts], where, n)
            movie = row[i_m].strip()
            if movie not in raw_items:
                tags_skipped += 1
                continue
            tag = " ".join(row[i_t].split()).lower()
            if tag:
                tag_counts[movie][tag] += 1

    items: list[Item] = []
    for item_id, (n, title, year, genres) in raw_items.items():
        items.append(make_item(movies_where, n, id=item_id, title=title, kind="movie", year=year,
                                genres=genres, tags=top_counts(tag_counts.get(item_id, Counter())),
                                extra=links.get(item_id, {})))

    data, where = src["ratings.csv"]
    header, rows = csv_rows(decode_strict_utf8(data, where), where,
                             ("userId", "movieId", "rating", "timestamp"), "ratings.csv")
    i_u, i_m, i_r, i_ts = (header.index(c) for c in ("userId", "movieId", "rating", "timestamp"))
    interactions: list[Interaction] = []
    append = interactions.append
    number, timestamp = Checks.number, checks.timestamp
    for n, row in rows:
        user, item = row[i_u].strip(), row[i_m].strip()
        if not user or not item:
            raise CatalogError("empty userId or movieId", where, n)
        if item not in raw_items:
            raise CatalogError(f"unknown movie {item!r} (not in movies.csv)", where, n)
        append(new_interaction(user=user, item=item, timestamp=timestamp(row[i_ts], where, n),
                                rating=number(row[i_r], "rating", where, n, 0.0, 5.0), weight=1.0,
                                event="rating"))
    return Catalog("movielens-latest-small", items, interactions, source=str(p),
                   load_stats={"items": len(items), "interactions": len(interactions),
                               "tags_on_unknown_movies_skipped": tags_skipped})



def _ml1m_movies(path: Path) -> dict[str, Item]:
    """``movies.dat``: ``MovieID::Title::Genres`` (latin-1), titles as people say them."""
    where = str(path)
    items: dict[str, Item] = {}
    for n, line in lines(read_bytes(path).decode("latin-1")):
        if not line.strip():
            continue
        f = line.split("::")
        if len(f) != 3:
            raise CatalogError(f"movie line: expected 3 '::'-separated fields, found {len(f)}", where, n)
        item_id, title, year = _id_and_title(f[0], f[1], items, "item", where, n)
        genres = tuple(g for g in f[2].strip().split("|") if g and g != "(no genres listed)")
        items[item_id] = make_item(where, n, id=item_id, title=title, kind="movie", year=year, genres=genres)
    return items


def load_movielens_1m(path: PathLike) -> Catalog:
    """MovieLens 1M from its folder: ``ratings.dat`` (``UserID::MovieID::Rating::Timestamp``) where
    present, else LRURec's preprocessed ``lrurec-sequences.tsv`` (one user a line, oldest first;
    see :mod:`mediarec.catalog.loaders.sequences`), with ``movies.dat`` for titles and genres.

    From the sequences, the catalog holds only the movies they name (the preprocessed item set,
    which full ranking is over) and each interaction's timestamp is its position in the sequence.
    """
    from mediarec.catalog.loaders.sequences import read_sequences, sequence_catalog

    folder = Path(path)
    if not folder.is_dir():
        raise CatalogError("not a folder (expected the ml-1m folder with movies.dat and ratings.dat "
                           "or lrurec-sequences.tsv)", folder)
    movies_path = folder / "movies.dat"
    if not movies_path.is_file():
        raise CatalogError("movies.dat is missing", folder)
    items = _ml1m_movies(movies_path)
    ratings = folder / "ratings.dat"
    if not ratings.is_file():
        seq_path = folder / "lrurec-sequences.tsv"
        if not seq_path.is_file():
            raise CatalogError("neither ratings.dat nor lrurec-sequences.tsv is here", folder)
        cat = sequence_catalog("movielens-1m", read_sequences(seq_path), items, source=str(seq_path))
        return cat.replace(source=str(folder), load_stats={**cat.load_stats, "from": seq_path.name})
    checks = Checks()
    where = str(ratings)
    log: list[Interaction] = []
    for n, line in lines(decode_lenient(read_bytes(ratings))):
        if not line.strip():
            continue
        f = line.split("::")
        if len(f) != 4:
            raise CatalogError(f"rating line: expected 4 '::'-separated fields, found {len(f)}", where, n)
        user, item = f[0].strip(), f[1].strip()
        if not user or not item:
            raise CatalogError("empty user or item id", where, n)
        if item not in items:
            raise CatalogError(f"unknown item {item!r} (not in movies.dat)", where, n)
        log.append(new_interaction(user=user, item=item, timestamp=checks.timestamp(f[3], where, n),
                                   rating=Checks.number(f[2], "rating", where, n, 0.0, 5.0), weight=1.0,
                                   event="rating"))
    return Catalog("movielens-1m", items.values(), log, source=str(folder),
                   load_stats={"items": len(items), "interactions": len(log), "from": ratings.name})
