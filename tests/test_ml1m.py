"""MovieLens-1M: the sequence-file loader, the registered `movielens-1m`, and `--protocol lrurec`
(checked against an independent reading of LRURec's sequence file, for every user)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from mediarec.catalog import load_dataset
from mediarec.catalog.loaders.movielens import load_movielens_1m
from mediarec.catalog.loaders.sequences import load_sequences, read_sequences
from mediarec.errors import CatalogError
from mediarec.eval.protocol import EvalProtocol
from mediarec.eval.split import split_for


# -- sequence files ---------------------------------------------------------------------------
def test_both_layouts_read_to_the_same_sequences(tmp_path):
    tab = tmp_path / "seq.tsv"
    tab.write_text("1\t10 11 12\n2\t12 10\n")
    pairs = tmp_path / "seq.txt"
    pairs.write_text("1 10\n1 11\n2 12\n1 12\n2 10\n")
    assert read_sequences(tab) == read_sequences(pairs) == {"1": ["10", "11", "12"], "2": ["12", "10"]}
    cat = load_sequences(tab)
    assert [(x.user, x.item, x.timestamp) for x in cat.interactions][:3] == [("1", "10", 0.0), ("1", "11", 1.0),
                                                                              ("1", "12", 2.0)]
    assert list(cat.items) == ["10", "11", "12"]  # numeric ids in numeric order


@pytest.mark.parametrize("text, line, message", [
    ("1\t10 11\n2 12 13\n", 2, "no tab"),
    ("1\t10 11\n1\t12\n", 2, "second line"),
    ("1\t10\n\t12\n", 2, "empty user"),
    ("1\t10\n2\t   \n", 2, "no items"),
    ("1 10\n1 11 12\n", 2, "2 fields"),
])
def test_malformed_lines_name_the_file_and_line(tmp_path, text, line, message):
    p = tmp_path / "bad.tsv"
    p.write_text(text)
    with pytest.raises(CatalogError, match=message) as e:
        read_sequences(p)
    assert str(e.value).startswith(f"{p}:{line}: ")


def test_an_empty_sequence_file_is_an_error(tmp_path):
    p = tmp_path / "empty.tsv"
    p.write_text("\n\n")
    with pytest.raises(CatalogError, match="empty"):
        read_sequences(p)


# -- movielens-1m -----------------------------------------------------------------------------
def _movies(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.dat").write_bytes("1::Toy Story (1995)::Animation|Comedy\n"
                                        "2::Matrix, The (1999)::Action|Sci-Fi\n"
                                        "3::Cité des enfants perdus, La (1995)::Sci-Fi\n".encode("latin-1"))


def test_ratings_dat_is_read_where_present(tmp_path):
    folder = tmp_path / "ml-1m"
    _movies(folder)
    (folder / "ratings.dat").write_text("1::2::5::978300760\n1::1::3::978300761\n2::3::4::978300762\n")
    (folder / "lrurec-sequences.tsv").write_text("9\t1 2 3\n")  # ignored: ratings.dat wins
    cat = load_movielens_1m(folder)
    assert cat.load_stats["from"] == "ratings.dat"
    assert {x.user for x in cat.interactions} == {"1", "2"}
    assert cat.interactions[0].rating == 5.0 and cat.interactions[0].event == "rating"
    assert cat.items["2"].title == "The Matrix" and cat.items["2"].year == 1999
    assert cat.items["3"].title == "La Cité des enfants perdus"  # latin-1, article moved


def test_sequences_are_read_without_ratings_dat(tmp_path):
    folder = tmp_path / "ml-1m"
    _movies(folder)
    (folder / "lrurec-sequences.tsv").write_text("7\t2 1\n8\t1 2 1\n")
    cat = load_movielens_1m(folder)
    assert cat.load_stats["from"] == "lrurec-sequences.tsv"
    assert list(cat.items) == ["1", "2"]  # only the movies the sequences name
    assert [x.item for x in cat.history("8")] == ["1", "2", "1"]


def test_malformed_ratings_and_movies_name_file_and_line(tmp_path):
    folder = tmp_path / "ml-1m"
    _movies(folder)
    (folder / "ratings.dat").write_text("1::2::5::978300760\n1::2::5\n")
    with pytest.raises(CatalogError, match=r"ratings.dat:2: rating line: expected 4"):
        load_movielens_1m(folder)
    (folder / "ratings.dat").write_text("1::99::5::978300760\n")
    with pytest.raises(CatalogError, match=r"ratings.dat:1: unknown item '99'"):
        load_movielens_1m(folder)
    (folder / "ratings.dat").unlink()
    (folder / "lrurec-sequences.tsv").write_text("1\t1 99\n")
    with pytest.raises(CatalogError, match="item '99' is not in the item file"):
        load_movielens_1m(folder)
    (folder / "movies.dat").write_text("1::Toy Story (1995)\n")
    with pytest.raises(CatalogError, match=r"movies.dat:1: movie line"):
        load_movielens_1m(folder)


def test_registered_and_loaded_from_the_shared_data(shared_data):
    cat = load_dataset("movielens-1m", shared_data)
    assert (len(cat.items), len(cat.interactions)) == (3416, 999_611)
    assert len({x.user for x in cat.interactions}) == 6040
    assert load_dataset("ml-1m", shared_data).name == "movielens-1m"
    titles = {it.title for it in cat.items.values()}
    assert "The Matrix" in titles and "Matrix, The" not in titles


# -- --protocol lrurec ------------------------------------------------------------------------
def test_lrurec_split_matches_an_independent_reading_for_every_user(shared_data):
    """Last item test, second-last validation, histories the rest, candidates every unseen item:
    checked against the file read with nothing but str.split, for all 6,040 users."""
    path = shared_data / "ml-1m" / "lrurec-sequences.tsv"
    truth = {}
    for raw in path.read_text(encoding="latin-1").splitlines():
        user, items = raw.split("\t")
        truth[user] = items.split(" ")
    n_items = len({i for s in truth.values() for i in s})
    proto = EvalProtocol.load("lrurec")
    assert proto.mode == "full" and proto.dataset == "movielens-1m"
    split = split_for(load_dataset("movielens-1m", shared_data), proto)
    assert len(split.catalog.items) == n_items == 3416
    assert set(split.test) == set(truth) and len(truth) == 6040
    for user, s in truth.items():
        assert split.test[user] == s[-1], user
        assert split.valid[user] == s[-2], user
        assert [x.item for x in split.test_history[user]] == s[:-1], user
        assert [x.item for x in split.valid_history[user]] == s[:-2], user
        assert split.seen[user] == set(s), user
    train_items = sum(len(s) - 2 for s in truth.values())
    assert len(split.train_catalog.interactions) == train_items
    assert len(split.train_val_catalog.interactions) == train_items + len(truth)


def test_lrurec_protocol_carries_the_published_anchors():
    proto = EvalProtocol.load("lrurec")
    got = {a.system: (a.metrics["ndcg@10"], a.metrics["hr@10"]) for a in proto.anchors}
    assert got == {"LRURec": (0.1930, 0.3264), "SASRec (cross-entropy)": (0.1902, 0.3181),
                   "HSTU-large (different preprocessing)": (0.1893, 0.3294), "SASRec+": (0.1821, 0.3152)}


def test_eval_lrurec_prints_ours_beside_the_anchors(shared_data, tmp_path, tmp_home):
    r = run_cli("eval", "--dataset", "movielens-1m", "--data-dir", str(shared_data), "--protocol", "lrurec",
                "--systems", "pop", "--users", "300", "--output", str(tmp_path / "out"), home=tmp_home)
    assert r.returncode == 0, r.stderr
    assert "LRURec (paper)" in r.stdout + r.stderr and "0.3264" in r.stdout + r.stderr
    import json

    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert m["protocol"]["name"] == "ml-1m-lrurec" and m["systems"]["pop"]["n_users"] == 300
