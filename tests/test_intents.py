"""The chat message parser on its own: each kind of intent, and messages that must stay requests.

No catalog and no session: these are the readings of the words alone (tests/test_session.py checks
what a session does with them).
"""

from __future__ import annotations

import pytest

from mediarec.chat.intents import (Again, Consumed, Feedback, LikeShown, MoreLike, NotShown, Request, Why,
                                   clean_message, is_vague, negated_term, parse_intent, shown_rank)


def test_clean_message_evens_out_spacing_quotes_and_contractions():
    assert clean_message("  more   like 2 !? ") == "more like 2"
    assert clean_message("I\u2019ve seen \u2018Heat\u2019.") == "I have seen 'Heat'"
    assert clean_message("   ") == ""
    assert parse_intent("  not    3 . ") == NotShown("not 3", (3,))


@pytest.mark.parametrize("msg", ["again", "Again!", "refresh", "more", "try again", "more please"])
def test_again(msg):
    assert isinstance(parse_intent(msg), Again)


@pytest.mark.parametrize("msg, ranks", [
    ("more like 2", (2,)), ("like 1, 3", (1, 3)), ("similar to number 4", (4,)),
    ("more of #1 & 2 and 5", (1, 2, 5)), ("More similar to 10", (10,)),
])
def test_more_like(msg, ranks):
    assert parse_intent(msg) == MoreLike(clean_message(msg), ranks)


@pytest.mark.parametrize("msg, ranks", [
    ("not 3", (3,)), ("skip 1 and 2", (1, 2)), ("hide #4", (4,)), ("not interested in 5", (5,)),
    ("remove 1,2", (1, 2)), ("never number 7", (7,)),
])
def test_not_shown(msg, ranks):
    assert parse_intent(msg) == NotShown(clean_message(msg), ranks)


@pytest.mark.parametrize("msg, rank", [
    ("why 2", 2), ("Why number 3?", 3), ("why is 1 here", 1), ("explain #4", 4), ("why did you pick 2", 2),
])
def test_why(msg, rank):
    """Tried as a user (stop 37): "why 2" was a request, answered "I did not understand 'why'"."""
    assert parse_intent(msg) == Why(clean_message(msg), rank)


@pytest.mark.parametrize("msg", ["why not something funny", "why so serious", "explain it like a friend"])
def test_why_without_a_rank_stays_a_request(msg):
    assert isinstance(parse_intent(msg), Request)


@pytest.mark.parametrize("msg, ref, liked", [
    ("I liked it", "it", True), ("thumbs up", "it", True), ("+1", "it", True),
    ("didn't like it", "it", False), ("meh", "it", False), ("-1", "it", False),
    ("I really liked that", "that", True), ("I liked 3", "3", True), ("I dig Heat", "Heat", True),
    ("I enjoyed the movie Heat", "the movie Heat", True),
    ("I hated 2", "2", False), ("I didn't like Heat", "Heat", False), ("I don't like westerns", "westerns", False),
    ("I hate Horror", "Horror", False), ("I love jazz and blues", "jazz and blues", True), ("Did not really enjoy Blade Runner", "Blade Runner", False),
])
def test_feedback_keeps_the_reference_as_typed(msg, ref, liked):
    assert parse_intent(msg) == Feedback(clean_message(msg), ref, liked)


@pytest.mark.parametrize("msg, title, verb, liked", [
    ("I watched Heat", "Heat", "watched", None),
    ("I've seen Heat (1995) and loved it", "Heat (1995)", "seen", True),
    ("I listened to Kind of Blue and didn't like it", "Kind of Blue", "listened to", False),
    ("watched Heat, and hated it", "Heat", "watched", False),
    ("we just finished Breaking Bad", "Breaking Bad", "finished", None),
    ("I have also binged The Wire - and it was great", "The Wire", "binged", True),
    ("I played Tetris.", "Tetris", "played", None),
])
def test_consumed(msg, title, verb, liked):
    assert parse_intent(msg) == Consumed(clean_message(msg), title, verb, liked)


@pytest.mark.parametrize("msg, term", [
    ("no horror", "horror"), ("no more sci-fi films please", "more sci-fi films"), ("without comedies", "comedies"),
    ("nothing scary", "scary"), ("No Horror anymore", "horror"), ("exclude dramas for now", "dramas"),
    ("ban romance", "romance"),
])
def test_negations_are_requests_for_the_parser(msg, term):
    """"no horror" is a request: the request parser, which knows the catalog's genres, reads the
    exclusion (tests/test_session.py); the words alone only say what was negated, for a hint."""
    assert parse_intent(msg) == Request(clean_message(msg))
    assert negated_term(msg) == term


@pytest.mark.parametrize("msg, rank, rest", [
    ("like 2 but shorter", 2, "but shorter"), ("something like #3, but from the 80s", 3, "but from the 80s"),
    ("similar to number 1 but funnier", 1, "but funnier"), ("more like 2 but an album", 2, "but an album"),
])
def test_like_a_shown_item_but(msg, rank, rest):
    assert parse_intent(msg) == LikeShown(clean_message(msg), rank, rest)


@pytest.mark.parametrize("msg", ["like 2", "like 1, 2 and 3", "like 2001 a space odyssey", "like Alien but funnier"])
def test_not_like_a_shown_item_but(msg):
    assert not isinstance(parse_intent(msg), LikeShown)


@pytest.mark.parametrize("msg", [
    "something like Alien but funnier",      # "like" inside a request is no feedback
    "calm piano music for studying",
    "no more like 2",                         # neither "not 2" nor a negation of "more like 2"
    "more like heist films",                  # "more like" with no rank
    "2",                                      # a bare number is a request unless a question is open
    "Heat",
    "watch something tense",                  # "watch" is not "watched"
    "liked",
    "dislike",
    "more like",
])
def test_requests_that_are_not_feedback(msg):
    assert parse_intent(msg) == Request(clean_message(msg))


def test_shown_rank():
    assert [shown_rank(s) for s in ("2", "#2", "number 12", " 3 ")] == [2, 2, 12, 3]
    assert [shown_rank(s) for s in ("it", "2nd", "number", "1 2", "Heat 2")] == [None] * 5


def test_is_vague():
    assert is_vague("what should I watch next?") and is_vague("surprise me") and is_vague("recommend something")
    assert not is_vague("calm piano music") and not is_vague("something like Alien")
