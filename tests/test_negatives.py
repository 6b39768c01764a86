"""Dislikes and low ratings are negative evidence everywhere (issue 28, item 1).

One definition of "liked" (``catalog.model.liked_flags``: no dislike, no rating below the user's own
midpoint) for every count, profile and piece of evidence; models learn from low ratings as
consumption (``model_flags``, measured) and, as measured too, only dislikes push away;
retrieval and the learned stage push away from what was disliked; a dislike-only user on the real
demo index gets items unlike the disliked one, and the result says the history held only dislikes.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mediarec.catalog import Catalog, Interaction, Item, model
from mediarec.catalog.model import (
    WEAK_NEGATIVE,
    liked_flags,
    model_flags,
    rating_midpoint,
)
from mediarec.index.collab import CollabModel, CollabSettings, item_sequences
from mediarec.rank.features import ALL_FEATURES, Signals
from mediarec.rank.learned import LearnedSettings, holdout
from mediarec.rank.profile import fallback_profile


def _r(user: str, item: str, t: float, rating: float | None = None, event: str | None = None) -> Interaction:
    return Interaction(user=user, item=item, timestamp=t, rating=rating,
                       event=event or ("rating" if rating is not None else "watch"))


# -- one definition of "liked" ------------------------------------------------------------------
def test_a_rating_below_the_users_own_midpoint_is_not_liked():
    log = [_r("a", "i1", 1, 1), _r("a", "i2", 2, 2), _r("a", "i3", 3, 3), _r("a", "i4", 4, 5),  # midpoint 3
           _r("b", "i1", 1, 3), _r("b", "i2", 2, 4), _r("b", "i3", 3, 5),  # rates 3-5: a 3 is low for b
           _r("c", "i1", 1, 4), _r("c", "i2", 2, 4),  # one value: nothing is below it
           _r("d", "i1", 1, 1),  # a single rating: nothing to compare with
           _r("e", "i1", 1, 1, "like"), _r("e", "i2", 2, 5), _r("e", "i3", 3, 3),  # a like is liked at any rating
           _r("f", "i1", 1, None, "dislike"), _r("f", "i2", 2, None, "watch"),
           _r("g", "i1", 1, 4), _r("g", "i2", 2, 5), _r("g", "i3", 3, 5)]  # 4s and 5s: all liked (too little spread)
    assert rating_midpoint([1, 2, 5]) == 3 and rating_midpoint([]) is None and rating_midpoint([4, 5]) is None
    assert rating_midpoint([6, 10]) == 8 and rating_midpoint([8, 9, 10]) is None  # a 10-point scale
    assert liked_flags(log) == [False, False, True, True,
                                False, True, True,
                                True, True,
                                True,
                                True, True, False,
                                False, True,
                                True, True, True]


def test_catalog_liked_positives_history_ids_and_negatives_agree():
    items = [Item(id=f"i{k}", title=f"Film {k}") for k in range(1, 6)]
    log = [_r("a", "i1", 1, 5), _r("a", "i2", 2, 1), _r("a", "i3", 3, 4), _r("a", "i4", 4, None, "dislike"),
           _r("b", "i2", 1, 5), _r("b", "i5", 2, 5)]
    cat = Catalog("c", items, log)
    assert [(x.user, x.item) for x in cat.liked] == [("a", "i1"), ("a", "i3"), ("b", "i2"), ("b", "i5")]
    assert [x.item for x in cat.liked_history("a")] == ["i1", "i3"]
    hist = cat.history("a")
    assert cat.history_ids(hist) == ["i1", "i2", "i3", "i4"]  # all seen (never recommended back)
    assert cat.history_negatives(hist) == [("i2", WEAK_NEGATIVE), ("i4", 1.0)]
    assert cat.history_negatives(hist, weak=0) == [("i4", 1.0)]  # retrieval's measured choice
    # what models learn from: consumption, never a dislike; the low rating i2 only while the measured switch says so
    assert model.MODELS_LEARN_FROM_LOW_RATINGS
    assert [x.item for x in cat.positives] == ["i1", "i2", "i3", "i2", "i5"]
    assert cat.history_ids(hist, positives_only=True) == ["i1", "i2", "i3"]
    assert model_flags(log) == [True, True, True, False, True, True]


def test_low_rated_items_are_never_counted_as_liked(monkeypatch):
    """Counts, profiles, evidence and the result's basis leave a low rating out of "liked"; models
    follow the measured switch (learning from it as consumption, or not at all)."""
    from mediarec.rank.evidence import EvidenceBuilder
    from mediarec.recommender import history_basis

    items = [Item(id=f"i{k}", title=f"Film {k}", genres=("Horror",) if k == 6 else ("Drama",)) for k in range(1, 7)]
    liked = [_r(u, i, t, 5) for u in ("a", "b", "c") for t, i in enumerate(("i1", "i2", "i3", "i4"))]
    low = [_r(u, "i6", 9, 1) for u in ("a", "b", "c")]  # each user's 1 among their 5s
    with_low, without = Catalog("c", items, liked + low), Catalog("c", items, liked)
    assert with_low.liked == without.liked and "i6" not in {x.item for x in with_low.liked}
    pairs = [(with_low.item(x.item), x) for x in with_low.history("a")]
    assert fallback_profile(pairs).genres == ["Drama"]
    basis = history_basis(pairs)
    assert basis.low_rated == ["i6"] and "i6" not in basis.liked and not basis.only_negatives
    # evidence: an item is never recommended "because you liked" a low-rated one
    vecs = np.eye(6, dtype=np.float32)
    collab = CollabModel.fit(with_low, CollabSettings(rank=4, ease_lambda=1.0), factorise=False)
    index = SimpleNamespace(text_vectors=vecs, item_ids=[it.id for it in items], embedder=None, collab=collab,
                            position={it.id: k for k, it in enumerate(items)}.get)
    ev = EvidenceBuilder(with_low, index).build([items[0], items[4]], pairs)
    assert all(link.id != "i6" for e in ev.values() for link in (*e.because, *e.similar))
    assert any(e.because for e in ev.values())  # the liked items do give evidence
    # the learned stage's targets follow the models' switch
    _, examples = holdout(with_low, LearnedSettings(positions_per_user=10, min_history=2))
    assert any(e.target == "i6" for e in examples)  # consumption: what eval's targets are too
    monkeypatch.setattr(model, "MODELS_LEARN_FROM_LOW_RATINGS", False)
    with_low, without = Catalog("c", items, liked + low), Catalog("c", items, liked)  # fresh: positives are cached
    s = CollabSettings(rank=4, ease_lambda=1.0)
    a, b = CollabModel.fit(with_low, s), CollabModel.fit(without, s)
    assert "i6" not in a.item_ids and a.item_ids == b.item_ids
    np.testing.assert_allclose(a.matrix, b.matrix, atol=1e-6)
    assert [list(x) for x in item_sequences(with_low, a.item_ids)] == [list(x) for x in item_sequences(without, b.item_ids)]
    _, examples = holdout(with_low, LearnedSettings(positions_per_user=10, min_history=2))
    assert examples and all(e.target != "i6" for e in examples)


# -- the learned stage's negative features, on a hand-made case ---------------------------------
def test_negative_features_on_a_hand_made_case():
    items = [Item(id="i1", title="One", genres=("A", "B")), Item(id="i2", title="Two", genres=("C",)),
             Item(id="i3", title="Three", genres=("A", "C")), Item(id="i4", title="Four", genres=("D",)),
             Item(id="i5", title="Five", genres=("B",)), Item(id="i6", title="Six", genres=("D",))]
    log = [_r(u, i, t, 5) for u, its in (("a", "i1 i3 i5"), ("b", "i1 i5 i6"), ("c", "i2 i3 i4"), ("d", "i4 i6 i2"))
           for t, i in enumerate(its.split())]
    cat = Catalog("hand", items, log)
    vecs = np.array([[1, 0, 0], [0, 1, 0], [0.6, 0.8, 0], [0, 0, 1], [0.8, 0, 0.6], [0, 0.6, 0.8]], np.float32)
    index = SimpleNamespace(text_vectors=vecs, item_ids=[it.id for it in items], embedder=None)
    collab = CollabModel.fit(cat, CollabSettings(rank=3, ease_lambda=1.0), factorise=False)
    sig = Signals(cat, index, collab)
    # the history: i1 disliked (weight 1), i2 rated low (weight 0.5: its 1 is below the midpoint 3), i6 liked
    hist = [_r("z", "i1", 1, None, "dislike"), _r("z", "i2", 2, 1), _r("z", "i6", 3, 5)]
    assert cat.history_negatives(hist) == [("i1", 1.0), ("i2", 0.5)]
    rows = np.array([2, 3, 4])  # i3, i4, i5
    neg_text, neg_collab, neg_genre = sig.negative_features(cat.history_negatives(hist), rows)
    # text: max over negatives of weight x cosine: i3 max(1·0.6, 0.5·0.8), i4 0, i5 max(1·0.8, 0)
    np.testing.assert_allclose(neg_text, [0.6, 0.0, 0.8], atol=1e-6)
    # genres: A and B weigh 1 (i1), C 0.5 (i2); i3 (A, C) -> 0.75, i4 (D) -> 0, i5 (B) -> 1
    np.testing.assert_allclose(neg_genre, [0.75, 0.0, 1.0], atol=1e-6)
    # collab: 1·M[i1, j] + 0.5·M[i2, j], divided by the pool's largest magnitude
    pos = {i: k for k, i in enumerate(collab.item_ids)}
    raw = np.array([collab.matrix[pos["i1"], pos[j]] + 0.5 * collab.matrix[pos["i2"], pos[j]] for j in ("i3", "i4", "i5")])
    np.testing.assert_allclose(neg_collab, raw / np.abs(raw).max(), atol=1e-5)
    assert np.abs(raw).max() > 0
    # features() computes the same columns from a history (a low rating takes no part there: measured)
    both = [_r("z", "i1", 1, None, "dislike"), _r("z", "i2", 2, None, "dislike"), _r("z", "i6", 3, 5)]
    x = sig.features(both, rows, sig.fused(both))
    cols = [ALL_FEATURES.index(f) for f in ("neg_text", "neg_collab", "neg_genre")]
    expect = np.stack(sig.negative_features([("i1", 1.0), ("i2", 1.0)], rows), axis=1)
    np.testing.assert_allclose(x[:, cols], expect, atol=1e-6)
    np.testing.assert_allclose(x[:, cols[0]], [0.8, 0.0, 0.8], atol=1e-6)  # i3: max(0.6, 0.8) now
    x_low = sig.features(hist, rows, sig.fused(hist))
    np.testing.assert_allclose(x_low[:, cols], np.stack(sig.negative_features([("i1", 1.0)], rows), axis=1), atol=1e-6)
    x_liked = sig.features(hist[2:], rows, sig.fused(hist[2:]))
    assert not x_liked[:, cols].any()


# -- retrieval and the product on the real demo index -------------------------------------------
@pytest.fixture(scope="module")
def demo_rec(demo_home):
    from mediarec.app import from_dataset

    rec = from_dataset("demo", llm="none")
    yield rec
    rec.close()


def test_a_dislike_pushes_its_neighbours_down(demo_rec):
    r, cat = demo_rec.retriever, demo_rec.catalog
    liked = [_r("z", "m-blade-runner-1982", 1, None, "like")]
    disliked = [*liked, _r("z", "m-alien-1979", 2, None, "dislike")]
    base, pushed = r.score_all(liked), r.score_all(disliked)
    aliens = r.index.position("m-aliens-1986")
    assert pushed[aliens] < base[aliens]
    assert np.isneginf(pushed[r.index.position("m-alien-1979")])  # seen: never recommended back
    top_base = [r.index.item_ids[j] for j in np.argsort(-base)[:10]]
    top_pushed = [r.index.item_ids[j] for j in np.argsort(-pushed)[:10]]
    horror = lambda ids: sum("Horror" in cat.items[i].genres for i in ids)
    assert horror(top_pushed) < horror(top_base), (top_base, top_pushed)


@pytest.mark.parametrize("disliked", ["m-alien-1979", "al-illmatic-nas", "m-the-godfather-1972", "s-breaking-bad-2008"])
def test_a_dislike_only_user_gets_nothing_of_the_disliked_genres(demo_rec, disliked):
    item = demo_rec.catalog.item(disliked)
    res = demo_rec.recommend(history=[_r("newcomer", disliked, 1, None, "dislike")], k=10)
    assert len(res.items) == 10
    shared = [(r.item.label, r.item.genres) for r in res.items if set(r.item.genres) & set(item.genres)]
    assert not shared, (item.genres, shared)
    assert disliked not in {r.item.id for r in res.items}
    assert res.basis.only_negatives and res.basis.disliked == [disliked] and res.basis.liked == []
    assert any("only dislikes" in n and item.label in n for n in res.notes), res.notes
    # the first stage alone turns away too (the learned stage only reorders its pool)
    cands = demo_rec.retriever.candidates([_r("newcomer", disliked, 1, None, "dislike")], k=10)
    assert not [c for c in cands if set(c.item.genres) & set(item.genres)]


def test_a_liked_history_has_no_negatives_note(demo_rec):
    res = demo_rec.recommend(history=["Alien (1979)"], k=5)
    assert res.basis.liked == ["m-alien-1979"] and not res.basis.only_negatives
    assert not any("only dislikes" in n for n in res.notes)


def test_a_dislike_said_in_chat_pushes_away_too(demo_rec):
    """In chat, "I didn't like Alien" is a dislike event the recommender sees, not only an exclusion:
    with nothing else to go on, the next list has none of Alien's genres."""
    from mediarec.chat.session import ChatSession

    s = ChatSession(demo_rec)
    ack = s.send("I didn't like Alien")
    assert ack.kind == "ack", ack.text
    alien = demo_rec.catalog.item("m-alien-1979")
    reply = s.send("what should I watch next?")
    items = [r.item for r in reply.result.items]
    assert items and alien.id not in {it.id for it in items}
    assert not [(it.label, it.genres) for it in items if set(it.genres) & set(alien.genres)]
