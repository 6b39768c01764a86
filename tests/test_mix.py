"""A list's media follow the history's (mediarec.rank.mix): a listener is not handed films.

Tried as a user on the demo (bd14ebe): chen, 34 albums, tracks and artists and one film (Whiplash),
got seven films in the top 10, each "drama, like Whiplash"; emil (31 music items, one film) got
four. The cap is checked by hand on small lists, then on the real demo index.
"""

from __future__ import annotations

import numpy as np
import pytest

from mediarec.app import from_catalog
from mediarec.catalog import load_dataset
from mediarec.rank.mix import calibrate_scores, calibrated_order, media_shares, medium


def test_media_shares_count_the_kinds_of_each_medium():
    assert media_shares(["movie", "series", "album", "movie"]) == {"video": 0.75, "audio": 0.25}
    assert media_shares([]) == {}
    assert medium("track") == medium("artist") == "audio" and medium("series") == "video"


def test_a_medium_beyond_its_share_moves_down_and_comes_back_when_its_cap_allows():
    media = ["video", "video", "audio", "video", "audio", "audio"]
    # A 50/50 history: place 1 may be either, place 2 needs the other medium unless it is over.
    assert calibrated_order(media, {"video": 0.5, "audio": 0.5}, 6) == [0, 2, 1, 4, 3, 5]
    # An all-audio history: every video goes below the audio items, in its own order.
    assert calibrated_order(media, {"audio": 1.0}, 6) == [2, 4, 5, 0, 1, 3]
    # A 3% share still allows one (the cap is at least 1 for a medium the history holds).
    assert calibrated_order(media, {"audio": 0.97, "video": 0.03}, 6) == [0, 2, 4, 5, 1, 3]
    # Only `n` places are chosen; the rest keep their order after them.
    assert calibrated_order(media, {"audio": 1.0}, 2) == [2, 4, 0, 1, 3, 5]


def test_an_order_within_every_cap_and_a_single_medium_are_left_alone():
    assert calibrated_order(["video", "audio", "video", "audio"], {"video": 0.5, "audio": 0.5}, 4) == [0, 1, 2, 3]
    assert calibrated_order(["video"] * 5, {"audio": 1.0}, 5) == list(range(5))
    assert calibrated_order(["video", "audio"], {}, 2) == [0, 1]


def test_calibrated_scores_hand_the_same_values_out_again():
    scores = np.array([5.0, 4.0, -np.inf, 3.0, 2.0, 1.0])
    media = ["video", "video", "audio", "audio", "audio", "video"]
    out = calibrate_scores(scores, media, {"audio": 1.0}, 6)
    assert sorted(out[np.isfinite(out)]) == sorted(scores[np.isfinite(scores)])
    assert np.isneginf(out[2])  # a consumed item stays out
    order = [int(r) for r in np.argsort(-out, kind="stable")[:5]]
    assert order == [3, 4, 0, 1, 5]


@pytest.fixture(scope="module")
def rec(demo_home):
    r = from_catalog(load_dataset("demo"), llm="none")
    yield r
    r.close()


def _media(res):
    return [medium(r.item.kind) for r in res.items]


def test_a_music_listener_with_one_film_gets_music(rec):
    hist = rec.catalog.history("chen")
    kinds = [rec.catalog.items[x.item].kind for x in hist]
    assert sum(medium(k) == "video" for k in kinds) == 1 and len(kinds) > 30  # the case: one film among music
    res = rec.recommend(user="chen", k=10, explain=False)
    assert _media(res).count("video") <= 1, [r.item.label for r in res.items]
    assert any("mix of media" in n for n in res.notes)


def test_a_film_watcher_gets_no_music_and_a_mixed_history_keeps_both(rec):
    alice = rec.recommend(user="alice", k=10, explain=False)
    assert set(_media(alice)) == {"video"}
    fatima = rec.recommend(user="fatima", k=10, explain=False)  # 26 films and series, 10 albums
    assert _media(fatima).count("audio") <= 3 and "video" in _media(fatima)


def test_a_request_for_a_kind_is_not_mixed_away(rec):
    """chen asks for films: the request's kind leads, the history's mix does not push them down."""
    res = rec.recommend(user="chen", k=5, query="a film", explain=False)
    assert set(_media(res)) == {"video"}, [r.item.label for r in res.items]
    assert not any("mix of media" in n for n in res.notes)


def test_the_full_ranking_the_evaluation_reads_is_mixed_too(rec):
    hist = rec.catalog.history("chen")
    top = np.argsort(-rec.score_array(hist), kind="stable")[:10]
    kinds = [rec.catalog.items[rec.item_ids[j]].kind for j in top]
    assert sum(medium(k) == "video" for k in kinds) <= 1
