"""Dataset loaders: the real files (read from the shared data folder, never copied into the repo),
the generic format, fetching, and bad input that must fail with the file and line named."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
import zipfile
from pathlib import Path

import pytest

from mediarec.catalog.model import Catalog
from mediarec.catalog import (
    DATASETS,
    DatasetWarning,
    clean_title,
    dataset_path,
    fetch_dataset,
    load_dataset,
    load_demo,
    load_generic,
    load_lastfm_2k,
    load_movielens_100k,
    load_movielens_latest_small,
    resolve_dataset_name,
    write_generic,
)
from mediarec.errors import CatalogError

LATEST_SHA = "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"


# ------------------------------------------------------------------------------------------
# real datasets (each loaded once per module)
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ml100k(shared_data) -> Catalog:
    return load_movielens_100k(shared_data / "ml-100k")


@pytest.fixture(scope="module")
def latest(shared_data) -> Catalog:
    # Load speed is measured in benchmarks/bench_load.py, not asserted here (shared CI cores).
    return load_movielens_latest_small(shared_data / "ml-latest-small" / "ml-latest-small.zip")


@pytest.fixture(scope="module")
def lastfm(shared_data) -> Catalog:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # this copy has no unknown artists
        return load_lastfm_2k(shared_data / "hetrec2011-lastfm-2k")


def test_ml100k_counts(ml100k):
    assert len(ml100k.items) == 1682
    assert len(ml100k.users()) == 943
    assert len(ml100k.interactions) == 100000
    x = ml100k.interactions[0]
    assert (x.user, x.item, x.rating, x.timestamp, x.event) == ("196", "242", 3.0, 881250949.0, "rating")
    assert all(it.kind == "movie" for it in ml100k.items.values())


def test_ml100k_titles_genres_latin1(ml100k):
    toy = ml100k.item("1")
    assert (toy.title, toy.year) == ("Toy Story", 1995)
    assert toy.genres == ("Animation", "Children's", "Comedy")
    assert ml100k.item("64").title == "The Shawshank Redemption"
    assert ml100k.item("14").title == "Il Postino"
    assert ml100k.item("543").title == "Les Misérables"          # latin-1 é, and "Les"
    assert ml100k.item("1233").title == "Nénette et Boni"
    assert ml100k.resolve("Shawshank Redemption").id == "64"
    unknown = ml100k.item("267")                                  # title "unknown", no date
    assert unknown.title == "unknown" and unknown.year is None and unknown.genres == ()


def test_latest_small_counts(latest):
    assert len(latest.items) == 9742
    assert len(latest.users()) == 610
    assert len(latest.interactions) == 100836
    assert {x.rating for x in latest.interactions} <= {i / 2 for i in range(1, 11)}


def test_latest_small_fields(latest):
    toy = latest.item("1")
    assert (toy.title, toy.year) == ("Toy Story", 1995)
    assert toy.genres == ("Adventure", "Animation", "Children", "Comedy", "Fantasy")
    assert "pixar" in toy.tags
    assert toy.extra == {"imdb_id": "tt0114709", "tmdb_id": "862"}
    # "(no genres listed)" means none; titles with commas and quotes survive the CSV parsing
    assert any(it.genres == () for it in latest.items.values())
    assert "(no genres listed)" not in {g for it in latest.items.values() for g in it.genres}
    assert latest.item("58").title == "The Postman (Il Postino)"
    assert latest.item("2053").title == "Honey, I Blew Up the Kid"
    for it in latest.items.values():
        assert len(it.tags) <= 10
        assert len(set(it.tags)) == len(it.tags)
        assert all(t == t.lower() and t for t in it.tags)


def test_latest_small_from_folder_and_csvs(shared_data, latest, tmp_path):
    from_folder = load_movielens_latest_small(shared_data / "ml-latest-small")
    assert from_folder.fingerprint() == latest.fingerprint()
    with zipfile.ZipFile(shared_data / "ml-latest-small" / "ml-latest-small.zip") as zf:
        zf.extractall(tmp_path)
    extracted = tmp_path / "ml-latest-small"
    assert (extracted / "movies.csv").is_file()
    assert load_movielens_latest_small(extracted).fingerprint() == latest.fingerprint()
    assert load_movielens_latest_small(tmp_path).fingerprint() == latest.fingerprint()


def test_lastfm(lastfm):
    assert len(lastfm.users()) == 1892
    stats = lastfm.load_stats
    assert len(lastfm.interactions) == 92834 - stats["plays_skipped_unknown_artist"]
    assert len(lastfm.items) == 17632
    first = lastfm.interactions[0]
    assert (first.user, first.item, first.weight, first.rating, first.event) == ("2", "51", 13883.0, None, "play")
    a = lastfm.item("2")
    assert a.kind == "artist" and a.title == "Diary of Dreams"
    assert a.extra == {"url": "http://www.last.fm/music/Diary+of+Dreams"}
    assert "darkwave" in a.tags and len(a.tags) <= 10
    assert sum(1 for it in lastfm.items.values() if it.tags) > 5000
    # tags.dat is latin-1: accented tag values decode
    assert any("ç" in t or "é" in t or "ã" in t for it in lastfm.items.values() for t in it.tags)
    # timestamps: first tagging day for tagged pairs, else 0; never negative
    dated = [x for x in lastfm.interactions if x.timestamp > 0]
    assert 0 < len(dated) < len(lastfm.interactions)
    assert all(x.timestamp >= 1009843200 for x in dated)  # 2002-01-01
    assert stats["tag_dates_ignored_before_2002"] >= 1


def test_lastfm_timestamp_rule(lastfm, shared_data):
    """user 2 first tagged artist 52 on 1/4/2009 (the first rows of user_taggedartists.dat)."""
    x = next(x for x in lastfm.interactions if x.user == "2" and x.item == "52")
    assert x.timestamp == 1238544000.0  # 2009-04-01T00:00:00Z


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _mini_lastfm(folder: Path, plays: str) -> Path:
    _write(folder / "artists.dat", "id\tname\turl\tpictureURL\n1\tSigur Rós\thttp://last.fm/1\t\n"
                                   "2\tBjörk\thttp://last.fm/2\t\n")
    _write(folder / "tags.dat", "tagID\ttagValue\r\n1\tpost-rock\r\n2\tislenska t\xf3nlist\r\n".encode("latin-1"))
    _write(folder / "user_taggedartists.dat",
           "userID\tartistID\ttagID\tday\tmonth\tyear\n"
           "7\t1\t1\t1\t5\t2008\n7\t1\t2\t1\t3\t2008\n8\t1\t1\t1\t1\t1956\n9\t2\t1\t1\t1\t2009\n")
    _write(folder / "user_artists.dat", plays)
    return folder


def test_lastfm_mini_skip_and_encodings(tmp_path):
    folder = _mini_lastfm(tmp_path / "lfm", "userID\tartistID\tweight\r\n7\t1\t120\r\n8\t1\t5\r\n"
                                            "8\t99\t7\r\n9\t2\t3\n")
    with pytest.warns(DatasetWarning, match="skipped 1 play row"):
        cat = load_lastfm_2k(folder)
    assert cat.load_stats["plays_skipped_unknown_artist"] == 1
    assert [x.item for x in cat.interactions] == ["1", "1", "2"]
    assert cat.item("1").title == "Sigur Rós"
    assert cat.item("1").tags == ("post-rock", "islenska tónlist")
    by = {(x.user, x.item): x for x in cat.interactions}
    assert by[("7", "1")].timestamp == 1204329600.0   # 2008-03-01, the earlier of two tagging days
    assert by[("7", "1")].weight == 120.0
    assert by[("8", "1")].timestamp == 0.0            # only tagged "1956": ignored
    assert by[("9", "2")].timestamp == 1230768000.0


def test_lastfm_bad_play_line(tmp_path):
    folder = _mini_lastfm(tmp_path / "lfm", "userID\tartistID\tweight\n7\t1\tmany\n")
    with pytest.raises(CatalogError, match=r"user_artists\.dat:2: play count 'many' is not a number"):
        load_lastfm_2k(folder)


# ------------------------------------------------------------------------------------------
# titles
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,expected", [
    ("Toy Story (1995)", ("Toy Story", 1995)),
    ("Shawshank Redemption, The (1994)", ("The Shawshank Redemption", 1994)),
    ("Perfect Plan, A (Plan parfait, Un) (2012)", ("A Perfect Plan (Un Plan parfait)", 2012)),
    ("Affair of Love, An (Liaison pornographique, Une) (1999)", ("An Affair of Love (Une Liaison pornographique)", 1999)),
    ("Misérables, Les (1995)", ("Les Misérables", 1995)),
    ("Boot, Das (Boat, The) (1981)", ("Das Boot (The Boat)", 1981)),
    ("Mariachi, El (1992)", ("El Mariachi", 1992)),
    ("Haine, La (1995)", ("La Haine", 1995)),
    ("Atalante, L' (1934)", ("L'Atalante", 1934)),
    ("Honey, I Shrunk the Kids (1989)", ("Honey, I Shrunk the Kids", 1989)),
    ("Death Note: Desu nôto (2006–2007)", ("Death Note: Desu nôto", 2006)),
    ("(500) Days of Summer (2009)", ("(500) Days of Summer", 2009)),
    ("Babylon 5", ("Babylon 5", None)),
])
def test_clean_title(raw, expected):
    assert clean_title(raw) == expected


# ------------------------------------------------------------------------------------------
# generic format
# ------------------------------------------------------------------------------------------

def test_generic_jsonl_and_csv(tmp_path):
    items = _write(tmp_path / "items.jsonl", "\n".join([
        json.dumps({"id": "m1", "title": "Alien", "kind": "movie", "year": 1979, "genres": ["Horror", "Sci-Fi"],
                    "tags": "space|creature", "description": "In space no one can hear you scream.",
                    "extra": {"director": "Ridley Scott"}, "country": "UK"}),
        "",
        json.dumps({"id": 2, "title": "Kind of Blue", "kind": "album", "genres": "Jazz"}),
        "   ",
    ]) + "\n")
    inter = _write(tmp_path / "interactions.jsonl",
                   '{"user": "u1", "item": "m1", "timestamp": 1700000000, "rating": 4.5}\n\n'
                   '{"user": 7, "item": "2", "timestamp": "2021-03-04T05:06:07Z", "event": "play", "weight": 3}\n'
                   '{"user": "u1", "item": "2"}\n')
    cat = load_generic(items, inter, name="mine")
    assert cat.name == "mine" and len(cat) == 2
    alien = cat.item("m1")
    assert alien.genres == ("Horror", "Sci-Fi") and alien.tags == ("space", "creature")
    assert alien.extra == {"director": "Ridley Scott", "country": "UK"}
    assert cat.item("2").kind == "album" and cat.item("2").year is None
    xs = cat.interactions
    assert (xs[0].rating, xs[0].event, xs[0].timestamp) == (4.5, "rating", 1700000000.0)
    assert (xs[1].user, xs[1].event, xs[1].weight, xs[1].timestamp) == ("7", "play", 3.0, 1614834367.0)
    assert (xs[2].event, xs[2].timestamp, xs[2].weight, xs[2].rating) == ("watch", 0.0, 1.0, None)

    items_csv = _write(tmp_path / "items.csv",
                       'id,title,kind,year,genres,tags,description,director\n'
                       'm1,Alien,movie,1979,Horror|Sci-Fi,space,"Quote ""in space"", with comma",Ridley Scott\n'
                       '\n'
                       's1,"The Office, UK",series,,Comedy,,,\n')
    inter_csv = _write(tmp_path / "interactions.csv",
                       "user,item,timestamp,rating,weight,event\nu1,m1,2020-01-01,5,,\nu2,s1,1600000000,,2,watch\n")
    cat = load_generic(items_csv, inter_csv)
    assert cat.item("m1").description == 'Quote "in space", with comma'
    assert cat.item("m1").extra == {"director": "Ridley Scott"}
    assert cat.item("s1").title == "The Office, UK" and cat.item("s1").extra == {}
    assert cat.interactions[0].timestamp == 1577836800.0 and cat.interactions[0].event == "rating"
    assert cat.interactions[1].weight == 2.0


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_generic_round_trip_real_data(ml100k, tmp_path, suffix):
    items, inter = tmp_path / f"items.{suffix}", tmp_path / f"interactions.{suffix}"
    write_generic(ml100k, items, inter)
    back = load_generic(items, inter)
    assert back.fingerprint() == ml100k.fingerprint()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_generic_round_trip_artists_csv(lastfm, tmp_path):
    some = list(lastfm.items.values())[:300]
    ids = {it.id for it in some}
    part = Catalog("part", some, [x for x in lastfm.interactions if x.item in ids])
    write_generic(part, tmp_path / "a.csv", tmp_path / "b.csv")
    back = load_generic(tmp_path / "a.csv", tmp_path / "b.csv")
    assert back.fingerprint() == part.fingerprint()
    assert back.item("2").kind == "artist" and back.item("2").tags == lastfm.item("2").tags


def test_demo_loads():
    cat = load_demo()
    assert cat.name == "demo" and len(cat) > 0 and cat.interactions
    assert load_dataset("demo").fingerprint() == cat.fingerprint()


def test_demo_loader_on_fixture(tmp_path, monkeypatch):
    import mediarec.catalog.loaders.demo as demo_loader

    _write(tmp_path / "items.jsonl", '{"id": "m1", "title": "Alien", "year": 1979}\n'
                                     '{"id": "a1", "title": "Björk", "kind": "artist"}\n')
    _write(tmp_path / "interactions.jsonl", '{"user": "u1", "item": "m1", "timestamp": 1}\n')
    monkeypatch.setattr(demo_loader, "demo_dir", lambda: tmp_path)
    cat = load_dataset("demo")
    assert cat.name == "demo" and len(cat) == 2 and len(cat.interactions) == 1
    (tmp_path / "items.jsonl").unlink()
    assert "demo data is missing" in str(_err(load_demo))


# ------------------------------------------------------------------------------------------
# bad input: every error names the file and the 1-based line
# ------------------------------------------------------------------------------------------

GOOD_ITEMS = '{"id": "a", "title": "A film"}\n{"id": "b", "title": "B film"}\n'


def _err(fn, *args) -> CatalogError:
    with pytest.raises(CatalogError) as ei:
        fn(*args)
    return ei.value


def test_ml100k_malformed_line(tmp_path, shared_data):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    for f in ("u.item", "u.genre"):
        shutil.copy(shared_data / "ml-100k" / f, folder / f)
    _write(folder / "u.data", "1\t1\t5\t881250949\n2\t1\t4\n")
    e = _err(load_movielens_100k, folder)
    assert e.path == str(folder / "u.data") and e.line == 2
    assert "u.data:2:" in str(e) and "expected 4 tab-separated fields, found 3" in str(e)
    _write(folder / "u.data", "1\t1\t5\t881250949\n\n2\t1\tfive\t881250949\n")
    assert "u.data:3: rating 'five' is not a number" in str(_err(load_movielens_100k, folder))
    _write(folder / "u.data", "1\t1\t5\tyesterday\n")
    assert "u.data:1: timestamp 'yesterday'" in str(_err(load_movielens_100k, folder))
    _write(folder / "u.data", "1\t99999\t5\t881250949\n")
    assert "u.data:1: unknown item '99999'" in str(_err(load_movielens_100k, folder))


def test_ml100k_empty_title_and_duplicate(tmp_path):
    folder = tmp_path / "ml"
    flags = "|".join(["0"] * 19)
    _write(folder / "u.item", f"1|Heat (1995)|||x|{flags}\n2| |||x|{flags}\n")
    _write(folder / "u.data", "")
    assert "u.item:2: empty title" in str(_err(load_movielens_100k, folder))
    _write(folder / "u.item", f"1|Heat (1995)|||x|{flags}\n1|Heat (1995)|||x|{flags}\n")
    assert "u.item:2: duplicate item id '1'" in str(_err(load_movielens_100k, folder))


def test_latest_small_bad_rows(tmp_path):
    _write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"Heat, The (1995)",Action\n')
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,1,4.0\n")
    e = _err(load_movielens_latest_small, tmp_path)
    assert "ratings.csv:3:" in str(e) and "expected 4 fields" in str(e)
    _write(tmp_path / "ratings.csv", "userId,movieId,rating\n1,1,4.0\n")
    assert "missing column(s) timestamp" in str(_err(load_movielens_latest_small, tmp_path))
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,4.0,964982703\n")
    assert "ratings.csv:2: unknown movie '2'" in str(_err(load_movielens_latest_small, tmp_path))
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,-5\n")
    assert "ratings.csv:2: negative timestamp" in str(_err(load_movielens_latest_small, tmp_path))
    _write(tmp_path / "movies.csv", 'movieId,title,genres\n1,Heat (1995),Action\n1,Heat (1995),Action\n')
    assert "movies.csv:3: duplicate movie id '1'" in str(_err(load_movielens_latest_small, tmp_path))


def test_generic_bad_json(tmp_path):
    items = _write(tmp_path / "items.jsonl", GOOD_ITEMS + '{"id": "c", "title": "C"\n')
    e = _err(load_generic, items)
    assert e.line == 3 and f"{items}:3: bad JSON" in str(e)
    _write(items, GOOD_ITEMS + '["not", "an", "object"]\n')
    assert f"{items}:3: expected a JSON object" in str(_err(load_generic, items))


def test_generic_empty_title_and_duplicate_id(tmp_path):
    items = _write(tmp_path / "items.jsonl", GOOD_ITEMS + '{"id": "c", "title": "  "}\n')
    assert f"{items}:3: empty title" in str(_err(load_generic, items))
    _write(items, GOOD_ITEMS + '\n{"id": "a", "title": "Again"}\n')
    assert f"{items}:4: duplicate item id 'a'" in str(_err(load_generic, items))
    _write(items, '{"id": "a", "title": "A", "kind": "podcast"}\n')
    assert f"{items}:1: unknown kind 'podcast'" in str(_err(load_generic, items))
    _write(items, '{"id": "a", "title": "A", "year": "nineteen"}\n')
    assert f"{items}:1: year 'nineteen' is not an integer" in str(_err(load_generic, items))


def test_generic_unknown_item_in_interactions(tmp_path):
    items = _write(tmp_path / "items.jsonl", GOOD_ITEMS)
    inter = _write(tmp_path / "x.jsonl", '{"user": "u", "item": "a"}\n{"user": "u", "item": "zz"}\n')
    e = _err(load_generic, items, inter)
    assert e.path == str(inter) and e.line == 2 and "unknown item 'zz'" in str(e)


def test_generic_wrong_encoding(tmp_path):
    items = _write(tmp_path / "items.csv", "id,title\n1,Heat\n2,Am\xe9lie\n".encode("latin-1"))
    e = _err(load_generic, items)
    assert e.line == 3 and "not valid UTF-8" in str(e) and "byte 0xe9" in str(e)
    items = _write(tmp_path / "items.jsonl", '{"id": "1", "title": "Am\xe9lie"}\n'.encode("latin-1"))
    assert f"{items}:1: not valid UTF-8" in str(_err(load_generic, items))


def test_generic_missing_columns(tmp_path):
    items = _write(tmp_path / "items.csv", "id,name\n1,Heat\n")
    assert "missing column(s) title" in str(_err(load_generic, items))
    items = _write(tmp_path / "items.csv", "id,title\n1,Heat\n2,Alien,extra\n")
    assert f"{items}:3: items: expected 2 fields" in str(_err(load_generic, items))
    _write(items, "id,title\n1,Heat\n")
    inter = _write(tmp_path / "x.csv", "user,timestamp\nu,1\n")
    assert "missing column(s) item" in str(_err(load_generic, items, inter))
    jl = _write(tmp_path / "x.jsonl", '{"user": "u"}\n')
    assert f"{jl}:1: missing 'item'" in str(_err(load_generic, items, jl))


@pytest.mark.parametrize("ts,msg", [
    ("-1", "negative timestamp"),
    ("NOW+3d", "in the future"),  # made in the test: a collected id must not depend on the clock (xdist)
    ("2999-01-01T00:00:00", "in the future"),
    ("1969-12-31T00:00:00Z", "negative timestamp"),
    ("nan", "not a finite number"),
    ("last week", "neither unix seconds nor an ISO-8601 date"),
])
def test_generic_bad_timestamps(tmp_path, ts, msg):
    if ts == "NOW+3d":
        ts = str(int(time.time()) + 3 * 86400)
    items = _write(tmp_path / "items.csv", "id,title\n1,Heat\n")
    inter = _write(tmp_path / "x.csv", f"user,item,timestamp\nu,1,100\nu,1,{ts}\n")
    e = _err(load_generic, items, inter)
    assert e.line == 3 and msg in str(e)


def test_generic_bad_rating_and_event(tmp_path):
    items = _write(tmp_path / "items.csv", "id,title\n1,Heat\n")
    inter = _write(tmp_path / "x.csv", "user,item,rating\nu,1,great\n")
    assert f"{inter}:2: rating 'great' is not a number" in str(_err(load_generic, items, inter))
    inter = _write(tmp_path / "x.jsonl", '{"user": "u", "item": "1", "event": "skim"}\n')
    assert f"{inter}:1: unknown event 'skim'" in str(_err(load_generic, items, inter))


# ------------------------------------------------------------------------------------------
# registry and load_dataset
# ------------------------------------------------------------------------------------------

def test_registry_names_and_aliases():
    assert set(DATASETS) == {"demo", "movielens-100k", "movielens-1m", "movielens-latest-small", "lastfm-2k"}
    assert resolve_dataset_name("ml-100k").name == "movielens-100k"
    assert resolve_dataset_name("ML-1M").name == "movielens-1m"
    assert resolve_dataset_name("ML-Latest-Small").name == "movielens-latest-small"
    assert resolve_dataset_name("hetrec2011-lastfm-2k").name == "lastfm-2k"
    assert DATASETS["movielens-latest-small"].sha256 == LATEST_SHA
    with pytest.raises(CatalogError, match="unknown dataset 'netflix'.*movielens-100k"):
        resolve_dataset_name("netflix")


def test_load_dataset_paths(shared_data, ml100k):
    assert dataset_path("ml-100k", shared_data) == shared_data / "ml-100k"
    assert dataset_path("ml-100k", shared_data / "ml-100k") == shared_data / "ml-100k"
    assert load_dataset("ml-100k", shared_data / "ml-100k").fingerprint() == ml100k.fingerprint()
    assert dataset_path("lastfm-2k", shared_data) == shared_data / "hetrec2011-lastfm-2k"
    assert dataset_path("ml-latest-small", shared_data) == shared_data / "ml-latest-small"


def test_load_dataset_missing(tmp_home):
    e = _err(load_dataset, "ml-100k")
    assert "mediarec data fetch movielens-100k" in str(e) and "--data-dir" in str(e)
    assert str(tmp_home / "data") in str(e)


# ------------------------------------------------------------------------------------------
# fetch
# ------------------------------------------------------------------------------------------

def test_fetch_file_url_with_sha(shared_data, tmp_path, latest):
    src = shared_data / "ml-latest-small" / "ml-latest-small.zip"
    dest = tmp_path / "data"
    folder = fetch_dataset("ml-latest-small", dest, url=src.resolve().as_uri(), progress=False)
    assert folder == dest / "ml-latest-small"
    assert (folder / "movies.csv").is_file()
    assert hashlib.sha256((dest / "ml-latest-small.zip").read_bytes()).hexdigest() == LATEST_SHA
    assert json.loads((folder / ".mediarec-source.json").read_text())["sha256"] == LATEST_SHA
    assert sorted(p.name for p in dest.iterdir()) == ["ml-latest-small", "ml-latest-small.zip"]
    assert load_dataset("ml-latest-small", dest).fingerprint() == latest.fingerprint()
    # again, over the existing folder: replaced, not nested
    fetch_dataset("ml-latest-small", dest, url=str(src), progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["ml-latest-small", "ml-latest-small.zip"]
    assert not (folder / "ml-latest-small").exists()


def test_fetch_folder_holding_the_zip(shared_data, tmp_path):
    folder = fetch_dataset("movielens-latest-small", tmp_path, url=str(shared_data / "ml-latest-small"),
                           progress=False)
    assert (folder / "ratings.csv").is_file()


def test_fetch_sha_mismatch_leaves_nothing(shared_data, tmp_path):
    bad = tmp_path / "src" / "ml-latest-small.zip"
    bad.parent.mkdir()
    bad.write_bytes((shared_data / "ml-latest-small" / "ml-latest-small.zip").read_bytes() + b"\0")
    dest = tmp_path / "data"
    e = _err(fetch_dataset, "ml-latest-small", dest, bad.as_uri())
    assert "sha256 mismatch" in str(e) and LATEST_SHA in str(e)
    assert list(dest.iterdir()) == []


def test_fetch_truncated_zip(shared_data, tmp_path, capsys):
    whole = (shared_data / "ml-latest-small" / "ml-latest-small.zip").read_bytes()
    cut = _write(tmp_path / "src" / "ml-100k.zip", whole[: len(whole) // 2])
    dest = tmp_path / "data"
    # ml-100k has no pinned sha, so the zip check itself must catch it
    e = _err(fetch_dataset, "ml-100k", dest, str(cut))
    assert "not a valid zip archive" in str(e)
    assert list(dest.iterdir()) == []
    # pinned: refused by the digest before anything is unpacked
    cut2 = _write(tmp_path / "src2" / "x.zip", whole[: len(whole) // 2])
    assert "sha256 mismatch" in str(_err(fetch_dataset, "ml-latest-small", dest, str(cut2)))
    assert list(dest.iterdir()) == []
    # a zip that is valid but not the dataset
    other = tmp_path / "src3" / "other.zip"
    other.parent.mkdir()
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert "does not contain the movielens-100k files" in str(_err(fetch_dataset, "ml-100k", dest, str(other)))
    assert list(dest.iterdir()) == []
    # a missing source
    assert "not found" in str(_err(fetch_dataset, "ml-100k", dest, str(tmp_path / "nope.zip")))
    assert list(dest.iterdir()) == []


def test_fetch_unpinned_prints_sha(tmp_path, capsys):
    src = tmp_path / "src" / "hetrec2011-lastfm-2k.zip"
    _mini_lastfm(tmp_path / "mini", "userID\tartistID\tweight\n7\t1\t120\n")
    src.parent.mkdir()
    with zipfile.ZipFile(src, "w") as zf:  # the real archive has the files at the top level
        for p in (tmp_path / "mini").iterdir():
            zf.write(p, p.name)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    folder = fetch_dataset("lastfm-2k", tmp_path / "data", url=src.as_uri(), progress=False)
    assert folder == tmp_path / "data" / "hetrec2011-lastfm-2k"
    assert digest in capsys.readouterr().err
    assert json.loads((folder / ".mediarec-source.json").read_text())["pinned"] is False
    assert len(load_dataset("lastfm-2k", tmp_path / "data").interactions) == 1


def test_fetch_local_directory_copy(shared_data, tmp_path, ml100k):
    folder = fetch_dataset("ml-100k", tmp_path, url=str(shared_data / "ml-100k"), progress=False)
    assert folder == tmp_path / "ml-100k" and (folder / "u.data").is_file()
    assert load_dataset("ml-100k", tmp_path).fingerprint() == ml100k.fingerprint()
    e = _err(fetch_dataset, "ml-100k", tmp_path / "x", str(tmp_path / "x"))
    assert "not found" in str(e) or "does not hold" in str(e)
