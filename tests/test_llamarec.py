"""The ``llamarec`` protocol: LlamaRec's own split of MovieLens latest-small, on the real file.

The expected split is recomputed here from the raw ``ratings.csv`` with the csv module and a
second, plain implementation of LlamaRec's steps (metadata filter, iterative 5-core, dense ids
from a CPython set, sort by (timestamp, dense id)), so the two implementations check each other.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter, defaultdict

import pytest

from mediarec.catalog import load_dataset
from mediarec.catalog.loaders.demo import load_demo
from mediarec.catalog.model import Catalog, Interaction, Item
from mediarec.cli import main
from mediarec.errors import CatalogError, ConfigError
from mediarec.eval import EvalProtocol, evaluate, leave_last_out
from mediarec.eval.baselines import PopularityScorer
from mediarec.eval.split import dense_item_ids, k_core, protocol_catalog, split_for


@pytest.fixture(scope="module")
def latest(shared_data) -> Catalog:
    return load_dataset("movielens-latest-small", shared_data)


@pytest.fixture(scope="module")
def protocol() -> EvalProtocol:
    return EvalProtocol.load("llamarec")


@pytest.fixture(scope="module")
def split(latest, protocol):
    return split_for(latest, protocol)


def _csv(zf: zipfile.ZipFile, name: str) -> list[dict[str, str]]:
    member = next(m for m in zf.namelist() if m.endswith("/" + name))
    return list(csv.DictReader(io.TextIOWrapper(zf.open(member), encoding="utf-8")))


@pytest.fixture(scope="module")
def reference(shared_data) -> dict[int, list[tuple[int, int, int]]]:
    """user -> [(timestamp, dense id, movie id)] sorted as LlamaRec sorts, from the raw CSVs."""
    with zipfile.ZipFile(shared_data / "ml-latest-small" / "ml-latest-small.zip") as zf:
        movies = {int(r["movieId"]) for r in _csv(zf, "movies.csv")}
        rows = [(int(r["userId"]), int(r["movieId"]), int(r["timestamp"])) for r in _csv(zf, "ratings.csv")]
    rows = [r for r in rows if r[1] in movies]  # items with metadata
    while True:
        per_item, per_user = Counter(r[1] for r in rows), Counter(r[0] for r in rows)
        if min(per_item.values()) >= 5 and min(per_user.values()) >= 5:
            break
        rows = [r for r in rows if per_item[r[1]] >= 5]
        per_user = Counter(r[0] for r in rows)
        rows = [r for r in rows if per_user[r[0]] >= 5]
    smap = {s: i for i, s in enumerate(set(r[1] for r in rows), start=1)}
    per: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for u, s, t in rows:
        per[u].append((t, smap[s], s))
    return {u: sorted(h) for u, h in per.items()}


def test_protocol_is_builtin_under_both_names(protocol):
    full = EvalProtocol.load("ml-latest-small-llamarec")
    assert protocol == full
    assert (protocol.core, protocol.ties, protocol.mode, protocol.users) == (5, "dense-id", "full", None)
    anchors = {a.system: a.metrics for a in protocol.anchors}
    assert anchors == {"LRURec": {"ndcg@10": 0.0705, "hr@10": 0.1426},
                       "LlamaRec": {"ndcg@10": 0.0759, "hr@10": 0.1524}}
    assert all("paper" in a.source for a in protocol.anchors)
    # The default protocols are untouched by the new fields.
    assert EvalProtocol.load("ml-latest-small-full").core == 0


def test_split_counts_on_the_real_file(split):
    cat = split.catalog
    assert len(cat.by_user) == 610
    assert len(cat.items) == 3650
    assert len(cat.interactions) == 90274
    assert len(split.test) == len(split.valid) == 610
    assert min(split.n_interactions.values()) >= 5
    assert cat.load_stats["protocol_filter"]["before"] == {"users": 610, "items": 9742, "interactions": 100836}
    # Full ranking is over the remaining items only.
    assert {x.item for x in cat.interactions} == set(cat.items)


def test_every_users_targets_match_the_independent_reimplementation(split, reference):
    assert set(split.test) == {str(u) for u in reference}
    for u, h in reference.items():
        assert split.test[str(u)] == str(h[-1][2]), u
        assert split.valid[str(u)] == str(h[-2][2]), u
        assert [x.item for x in split.valid_history[str(u)]] == [str(s) for _, _, s in h[:-2]], u


def test_hand_checked_users(split, latest, reference):
    # (user, test movie, validation movie), read off ratings.csv by hand.
    expected = {"1": ("2492", "2012"), "610": ("3917", "2459"),
                "5": ("474", "300"),      # last three ratings share one timestamp
                "429": ("164", "169"),    # the dense-id rule decides validation ...
                "493": ("4701", "2948")}  # ... where file order would pick another movie
    for user, (test_item, valid_item) in expected.items():
        assert (split.test[user], split.valid[user]) == (test_item, valid_item), user
    ts = {x.item: x.timestamp for x in latest.history("429")}
    assert ts["164"] > ts["169"] == ts["553"]  # the two candidates for validation share a timestamp
    unfiltered = leave_last_out(latest)
    assert unfiltered.valid["429"] == "553" and unfiltered.valid["493"] == "3267"
    assert reference[429][-2][2] == 169


def test_dense_ids_follow_a_cpython_set_of_ints():
    # In a set of 8 slots, 6 -> slot 6, 9 -> slot 1, 4 -> slot 4: neither log order nor sorted.
    log = [Interaction(user="u", item=i) for i in ("6", "9", "6", "4")]
    assert list(set([6, 9, 6, 4])) == [9, 4, 6]
    assert dense_item_ids(log) == {"9": 1, "4": 2, "6": 3}
    # Ids that are not plain integers ("007" is not 7) are numbered by first appearance.
    odd = [Interaction(user="u", item=i) for i in ("b", "007", "a", "b")]
    assert dense_item_ids(odd) == {"b": 1, "007": 2, "a": 3}


def test_k_core_filters_items_then_users_until_stable():
    # Item "rare" has 1 interaction; removing it leaves user "c" with 1, which then goes too,
    # which drops item "x" below 2 in the next round.
    log = [Interaction(user=u, item=i) for u, i in
           [("a", "x"), ("a", "y"), ("b", "y"), ("b", "z"), ("a", "z"), ("c", "rare"), ("c", "x")]]
    kept, rounds = k_core(log, 2)
    assert {(x.user, x.item) for x in kept} == {("a", "y"), ("b", "y"), ("b", "z"), ("a", "z")}
    assert rounds == 2


def test_a_catalog_without_integer_ids_works(protocol):
    demo = load_demo()
    assert not all(i.isdigit() for i in demo.items)
    proto = protocol.model_copy(update={"core": 2})
    cat = protocol_catalog(demo, proto)
    assert 0 < len(cat.interactions) <= len(demo.interactions)
    assert all(n >= 2 for n in Counter(x.item for x in cat.interactions).values())
    sp = leave_last_out(cat)
    for user, hist in sp.test_history.items():
        last = max(cat.by_user[user], key=lambda x: x.timestamp)
        assert sp.test[user] in {x.item for x in cat.by_user[user] if x.timestamp == last.timestamp}
        assert all(x.timestamp <= last.timestamp for x in hist)


def test_a_catalog_the_filter_empties_is_a_clear_error(protocol):
    items = [Item(id=str(i), title=f"film {i}") for i in range(3)]
    sparse = Catalog("sparse", items, [Interaction(user=f"u{i}", item=str(i), timestamp=i) for i in range(3)])
    with pytest.raises(CatalogError, match="5-core filter leaves no interactions"):
        split_for(sparse, protocol)
    with pytest.raises(CatalogError, match="5-core"):
        split_for(Catalog("empty", items), protocol)


def test_report_prints_the_papers_numbers_as_the_papers(split, latest, protocol, tmp_path):
    proto = protocol.model_copy(update={"bootstrap": 20})
    out = tmp_path / "run"
    evaluate(split.catalog, [PopularityScorer()], proto, split=split, progress=False, output_dir=out)
    md = (out / "report.md").read_text()
    assert "| LlamaRec *(paper)* | 0.1524 | 0.0759 |" in md
    assert "| LRURec *(paper)* | 0.1426 | 0.0705 |" in md
    assert "5-core" in md and "dense item id" in md
    data = json.loads((out / "metrics.json").read_text())
    assert data["n_users"] == 610
    assert [a["system"] for a in data["protocol"]["anchors"]] == ["LRURec", "LlamaRec"]


def test_mediarec_eval_evaluates_the_filtered_catalog(shared_data, tmp_home, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["eval", "--dataset", "movielens-latest-small", "--data-dir", str(shared_data),
               "--protocol", "llamarec", "--systems", "pop", "--output", str(out)])  # not --quiet: the table
    assert rc == 0
    data = json.loads((out / "metrics.json").read_text())
    assert data["catalog"]["items"] == 3650 and data["catalog"]["interactions"] == 90274
    assert data["systems"]["pop"]["n_users"] == 610
    assert "evaluated catalog: 610 users, 3,650 items, 90,274 interactions" in (out / "report.md").read_text()
    table = capsys.readouterr().err  # the terminal table shows the anchors too (a narrow one wraps names)
    assert "LRURec (paper)" in table and "0.0759" in table and "0.1524" in table


def test_unknown_protocol_names_the_alias(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="llamarec"):
        EvalProtocol.load("no-such-protocol")
