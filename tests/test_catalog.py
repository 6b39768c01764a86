"""The Catalog itself: immutable, derived only through replace()/extend(), and one meaning of events
(a dislike is seen, never a positive) in every model that learns from the log."""

from __future__ import annotations

import numpy as np
import pytest

from mediarec.catalog import Catalog, Interaction, Item, load_demo
from mediarec.catalog.titles import clean_title, normalize_title
from mediarec.errors import CatalogError, UnknownItemError
from mediarec.eval.baselines import ItemKNNScorer, PopularityScorer
from mediarec.index.collab import CollabModel, CollabSettings

ITEMS = [Item(id=f"i{k}", title=f"Film {k}") for k in range(1, 7)]


def _x(user: str, item: str, t: float, event: str = "watch") -> Interaction:
    return Interaction(user=user, item=item, timestamp=t, event=event)


# Users who like i1/i2 together; u3 and u4 *dislike* i5 next to i1. Counted as a positive, i5
# would co-occur with i1 and rise for anyone who liked i1.
LIKES = [_x("u1", "i1", 1), _x("u1", "i2", 2), _x("u2", "i1", 1), _x("u2", "i2", 2), _x("u2", "i3", 3),
         _x("u3", "i1", 1), _x("u3", "i4", 2), _x("u4", "i1", 1), _x("u4", "i6", 2)]
DISLIKES = [_x("u3", "i5", 3, "dislike"), _x("u4", "i5", 3, "dislike")]


@pytest.fixture()
def with_dislikes() -> Catalog:
    return Catalog("events", ITEMS, LIKES + DISLIKES)


@pytest.fixture()
def likes_only() -> Catalog:
    return Catalog("events", ITEMS, LIKES)


def test_catalog_is_immutable(with_dislikes):
    with pytest.raises(AttributeError):
        with_dislikes.name = "other"
    with pytest.raises(AttributeError):
        with_dislikes.load_stats = {"rows": 1}
    with pytest.raises(TypeError):
        with_dislikes.items["i9"] = Item(id="i9", title="Nine")
    assert isinstance(with_dislikes.interactions, tuple) and isinstance(with_dislikes.by_user["u1"], tuple)
    with pytest.raises(TypeError):
        with_dislikes.by_user["u9"] = ()  # read-only: the log cannot be edited through it
    hist = with_dislikes.history("u1")
    hist.append(_x("u1", "i3", 4))  # a caller's copy
    assert len(with_dislikes.history("u1")) == 2


def test_replace_validates_and_keeps_what_still_holds(with_dislikes):
    cat = with_dislikes
    assert cat.resolve("Film 3").id == "i3"  # builds the title index
    split = cat.replace(interactions=cat.interactions[:3])
    assert split.items is not cat.items and dict(split.items) == dict(cat.items)
    assert split.title_index is cat.title_index  # same titles: not rebuilt
    assert len(split.interactions) == 3 and split.name == cat.name and split.source == cat.source
    assert split.fingerprint() != cat.fingerprint() and split.items_fingerprint() == cat.items_fingerprint()
    renamed = cat.replace(items=[it.model_copy(update={"title": "Other " + it.id}) for it in ITEMS])
    assert renamed.title_index is not cat.title_index and renamed.resolve("Other i2").id == "i2"
    with pytest.raises(CatalogError, match="not in the catalog"):
        cat.replace(items=ITEMS[:2])  # the log names i3..i6
    with pytest.raises(CatalogError, match="duplicate item id"):
        cat.replace(items=ITEMS + ITEMS[:1])
    stats = Catalog("s", ITEMS, load_stats={"rows": 9}).replace(name="t")
    assert stats.load_stats == {"rows": 9} and stats.name == "t" and stats.summarised_items == 0


def test_extend_adds_items_and_interactions(likes_only):
    new = Item(id="i7", title="Film 7")
    more = likes_only.extend(items=[new], interactions=[_x("u9", "i7", 5, "like")])
    assert "i7" in more.items and "i7" not in likes_only.items
    assert more.history("u9")[0].item == "i7" and len(more.interactions) == len(likes_only.interactions) + 1
    with pytest.raises(CatalogError, match="duplicate item id"):
        likes_only.extend(items=[ITEMS[0]])
    with pytest.raises(CatalogError, match="not in the catalog"):
        likes_only.extend(interactions=[_x("u9", "nope", 1)])


def test_history_ids_resolves_every_form(with_dislikes):
    cat = with_dislikes
    hist = [_x("u3", "i1", 1), ITEMS[1], "i3", "film 4", _x("u3", "i5", 3, "dislike")]
    assert cat.history_ids(hist) == ["i1", "i2", "i3", "i4", "i5"]
    assert cat.history_ids(hist, positives_only=True) == ["i1", "i2", "i3", "i4"]
    with pytest.raises(UnknownItemError):
        cat.history_ids(["no such film"])


def test_fingerprint_includes_the_event(likes_only):
    liked = likes_only.replace(interactions=[x.model_copy(update={"event": "like"}) for x in LIKES])
    assert liked.fingerprint() != likes_only.fingerprint()
    assert likes_only.replace(interactions=list(LIKES)).fingerprint() == likes_only.fingerprint()


def test_positives_leave_out_dislikes(with_dislikes):
    assert [x.is_positive for x in DISLIKES] == [False, False]
    assert with_dislikes.positives == tuple(LIKES)


def test_ease_learns_nothing_from_a_dislike(with_dislikes, likes_only):
    s = CollabSettings(rank=4, ease_lambda=1.0)
    a, b = CollabModel.fit(with_dislikes, s), CollabModel.fit(likes_only, s)
    assert a.item_ids == b.item_ids and "i5" not in a.item_ids
    np.testing.assert_allclose(a.query_vectors, b.query_vectors, atol=1e-6)
    np.testing.assert_allclose(a.item_vectors, b.item_vectors, atol=1e-6)


def test_pop_and_itemknn_learn_nothing_from_a_dislike(with_dislikes, likes_only):
    pop_a, pop_b = PopularityScorer(), PopularityScorer()
    pop_a.fit(with_dislikes)
    pop_b.fit(likes_only)
    assert pop_a.score(["i1"])["i5"] == 0.0
    np.testing.assert_array_equal(pop_a.score_array([]), pop_b.score_array([]))

    knn_a, knn_b = ItemKNNScorer(k=5), ItemKNNScorer(k=5)
    knn_a.fit(with_dislikes)
    knn_b.fit(likes_only)
    assert knn_a.score(["i1"])["i5"] == 0.0  # i5 never co-occurs as a positive
    np.testing.assert_allclose(knn_a.sim.toarray(), knn_b.sim.toarray())
    # a disliked item in the scoring history does not pull its neighbours up
    hist = with_dislikes.history("u3")
    np.testing.assert_allclose(knn_a.score_array(hist), knn_a.score_array([x for x in hist if x.is_positive]))
    assert knn_a.score_array([_x("u3", "i2", 1, "dislike")]).sum() == 0.0


def test_one_article_list_for_display_and_matching():
    assert clean_title("Postino, Il (1994)") == ("Il Postino", 1994)
    assert normalize_title("Il Postino")[0] == normalize_title("Postino, Il")[0] == "postino"
    assert clean_title("Avventura, L' (1960)") == ("L'Avventura", 1960)
    assert normalize_title("L'Avventura")[0] == normalize_title("Avventura, L'")[0] == "avventura"
    assert normalize_title("The Matrix (1999)") == ("matrix", 1999)


def test_demo_catalog_has_no_attribute_surgery():
    demo = load_demo()
    assert demo.summarised_items == 0 and dict(demo.load_stats) == {}
