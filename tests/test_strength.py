"""Interaction strength (issue 29, item 4): play counts weigh a history's items in the collaborative
query, on a tiny listening log written as real files (real embedder, real Chroma index).

Two pairs of artists are co-listened by disjoint groups of listeners: a1 with b1, a2 with b2. A
listener who played a1 a thousand times and then a2 once is, by play counts, an a1 listener: b1 must
come before b2 once strengths count, while unweighted the more recent a2 puts b2 first (the log is
otherwise symmetric). A MovieLens-like log (ratings, weight 1) keeps every item alike.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402

from mediarec.catalog.loaders.generic import load_generic  # noqa: E402
from mediarec.catalog.model import Interaction  # noqa: E402
from mediarec.eval.tuning import ExactCollabScorer, tune  # noqa: E402
from mediarec.index.collab import CollabSettings, has_strengths, strength_weights  # noqa: E402
from mediarec.index.retriever import FusionSettings, Retriever  # noqa: E402
from mediarec.index.store import IndexBuilder, IndexSettings  # noqa: E402
from mediarec.index.tuning import stored_choice  # noqa: E402
from mediarec.rank.evidence import EvidenceBuilder  # noqa: E402

ARTISTS = ("a1", "b1", "a2", "b2", "c1", "c2")


@pytest.fixture(scope="module")
def listens(tmp_path_factory):
    folder = tmp_path_factory.mktemp("listens")
    with open(folder / "items.jsonl", "w", encoding="utf-8") as f:
        for a in ARTISTS:
            f.write(json.dumps({"id": a, "title": f"Band {a.upper()}", "kind": "artist", "genres": ["Rock"]}) + "\n")
    with open(folder / "interactions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["user", "item", "timestamp", "weight", "event"])
        for k in range(6):  # six a1+b1 listeners, six a2+b2 listeners, each with varying play counts
            for user, pair in ((f"x{k}", ("a1", "b1")), (f"y{k}", ("a2", "b2"))):
                for a in pair:
                    w.writerow([user, a, 0, 10 + 7 * k, "play"])
                w.writerow([user, "c1" if k % 2 else "c2", 0, 3, "play"])
        w.writerow(["fan", "a1", 0, 1000, "play"])
        w.writerow(["fan", "a2", 0, 1, "play"])
    return load_generic(folder / "items.jsonl", folder / "interactions.csv", name="listens")


def _index(cat, embedder, tmp_path, strength):
    client = chromadb.PersistentClient(path=str(tmp_path / strength))
    settings = IndexSettings(collab=CollabSettings.for_catalog(cat, use_tuned=False, strength=strength))
    return IndexBuilder(cat, client, settings, embedder=embedder).build()


def test_play_counts_weigh_the_history_in_the_collaborative_query(listens, embedder, tmp_path):
    assert has_strengths(listens)
    assert CollabSettings.for_catalog(listens, use_tuned=False).strength == "log1p"  # the default for play counts
    fan = listens.history("fan")
    scores = {}
    for strength in ("none", "log1p"):
        index = _index(listens, embedder, tmp_path, strength)
        collab = Retriever(index, FusionSettings(text_weight=0.0))
        s = collab.collab_scores(fan)
        scores[strength] = {i: float(s[index.position(i)]) for i in ("b1", "b2")}
        ranked = [c.item.id for c in collab.candidates(fan, k=2)]
        if strength == "log1p":
            assert ranked[0] == "b1", ranked  # the thousand-play artist's neighbour first
            # the harness's tuning scorer weighs the same way
            scorer = ExactCollabScorer("t", index.collab, list(index.item_ids), index.collab.settings.decay)
            arr = scorer.score_array(fan)
            assert arr[index.position("b1")] > arr[index.position("b2")]
            # and the evidence names a1 as what drives b1, with the weight the ranking gave it
            ev = EvidenceBuilder(listens, index).build([listens.items["b1"]], listens.history_pairs(fan))["b1"]
            assert ev.because and ev.because[0].id == "a1"
    assert scores["none"]["b2"] > scores["none"]["b1"]  # unweighted, recency decides: a2 came last
    assert scores["log1p"]["b1"] > 1.5 * scores["log1p"]["b2"]  # log1p(1000) / log1p(1) ≈ 10 before the blend


def test_strength_weights_read_plays_and_watches_only():
    w = strength_weights("log1p", [np.e - 1, None, np.e**3 - 1], n=4)  # log1p: 1 and 3, mean 2
    assert w == pytest.approx([0.5, 1.0, 1.5, 1.0])  # a like or a bare item, and a reference item, weigh 1
    assert strength_weights("log1p", [5.0, 5.0]) is None  # nothing varies
    assert strength_weights("none", [1.0, 1000.0]) is None


def test_ratings_are_not_strengths_and_a_few_replay_counts_keep_items_alike(ml100k, tmp_path):
    assert not has_strengths(ml100k)  # MovieLens: ratings, weight 1
    assert CollabSettings.for_catalog(ml100k, use_tuned=False).strength == "none"
    rated = [Interaction(user="u", item=i, rating=5.0, weight=9.0, event="rating") for i in ("1", "2")]
    assert ml100k.history_strengths(rated) == [None, None]  # a rating's weight is not a play count
    from mediarec.catalog.registry import load_dataset

    demo = load_dataset("demo", tmp_path)  # 115 of its 454 plays and watches weigh 2-5: not mostly
    assert not has_strengths(demo) and CollabSettings.for_catalog(demo, use_tuned=False).strength == "none"


def test_tune_weighs_its_best_point_both_ways_where_the_log_has_strengths(listens, ml100k, tmp_path):
    out = tune(listens, home=tmp_path, search="coordinate")
    tried = {r["strength"] for r in out["grid"]}
    assert tried == {"none", "log1p"}
    best = max(out["grid"], key=lambda r: r["ndcg@10"])
    assert out["settings"]["strength"] == best["strength"]
    assert stored_choice(listens, tmp_path)["strength"] == best["strength"]  # what index then builds with
    assert CollabSettings.for_catalog(listens, use_tuned=False).strength == "log1p"
    small = tune(ml100k, validation_users=60, home=tmp_path, write=False, search="coordinate",
                 grid={"ease_lambda": (500.0,), "alpha": (0.5,), "window": (5,), "decay": (0.85,)})
    assert {r["strength"] for r in small["grid"]} == {"none"}  # ratings: nothing to weigh
