"""Chat sessions on the bundled demo catalog: requests, feedback, exclusions, bans, save/load.

Retrieval-only sessions (``llm="none"``) check what feedback does to the candidates; one session
runs the real SmolLM2-135M through llama.cpp. MEDIAREC_HOME is a temporary folder whose models/
points at the shared model cache.
"""

from __future__ import annotations

import json
import stat

import pytest

from mediarec.recommender import Recommender
from mediarec.config import get_settings
from mediarec.catalog import load_dataset
from mediarec.errors import MediarecError
from mediarec.llm import LocalLLM
from mediarec.llm.weights import resolve
from mediarec.chat.intents import is_vague
from mediarec.chat.session import ChatSession, SessionReply
from mediarec.app import from_catalog

FAKE_KEY = "sk-fake-test-key"


@pytest.fixture(scope="module")
def home(demo_home):
    return demo_home  # the demo already indexed


@pytest.fixture(scope="module")
def plain(home) -> Recommender:
    return from_catalog(load_dataset("demo"), llm="none")


def _ids(reply: SessionReply) -> list[str]:
    assert reply.result is not None, reply.text
    return [r.item.id for r in reply.result.items]


def _horror(item) -> bool:
    return any("horror" in x.lower() for x in (*item.genres, *item.tags))


def test_chat_starts_from_the_users_history(plain):
    s = ChatSession(plain, user="alice")
    assert isinstance(s, ChatSession)
    assert [x.item for x in s.history()] == [x.item for x in plain.catalog.history("alice")]
    anon = ChatSession(plain)
    assert anon.history() == [] and anon.user is None


def test_request_gives_recommendations(plain):
    s = ChatSession(plain, user="alice")
    r = s.send("something like Alien but funnier")
    assert r.kind == "recommendations" and len(r.result.items) == 10
    assert s.shown == _ids(r) and s.last_request == "something like Alien but funnier"
    seen = {x.item for x in plain.catalog.history("alice")}
    assert not set(_ids(r)) & seen
    assert [t.role for t in s.turns] == ["user", "assistant"]


def test_excluded_item_never_returns(plain):
    s = ChatSession(plain, user="alice")
    first = _ids(s.send("something like Alien but funnier"))
    gone = first[0]
    r = s.send("not 1")
    assert r.kind == "recommendations"
    assert gone in s.excluded and gone not in _ids(r)
    # Other requests and feedback later still leave it out (it would be back in a fresh session).
    for msg in ("tense 80s sci-fi", "more like 1", "again", "something like Alien but funnier"):
        reply = s.send(msg)
        assert reply.kind == "recommendations", reply.text
        assert gone not in _ids(reply), msg
    fresh = ChatSession(plain, user="alice").send("something like Alien but funnier")
    assert _ids(fresh)[0] == gone


def test_more_like_moves_the_neighbours_up(plain):
    s = ChatSession(plain, user="alice", k=15)
    before = s.send("something like Alien but funnier")
    liked = plain.catalog.items[s.shown[2]]
    # The liked item's nearest items (retrieval from that item alone), among those still allowed.
    banned = s.exclusions() | {x.item for x in s.history()} | {liked.id}
    allowed = s.constraints.model_copy(update={"reference": None})  # the standing filters (Comedy), not Alien
    neighbours = [c.item.id for c in plain.retriever.candidates([liked], k=5, exclude=banned, constraints=allowed)]
    assert len(neighbours) == 5

    def ranks(reply):
        pos = {r.item.id: r.rank for r in reply.result.items}
        return [pos.get(n, s.k + 1) for n in neighbours]

    r0 = ranks(before)
    after = s.send("more like 3")
    assert after.kind == "recommendations"
    r1 = ranks(after)
    assert s.history()[-1].item == liked.id and s.history()[-1].event == "like"
    assert liked.id not in _ids(after)
    assert sum(r1) < sum(r0), (neighbours, r0, r1)
    best = min(range(5), key=lambda j: r0[j])  # the neighbour that was ranked best before
    assert r1[best] <= r0[best]
    assert any(b < a for a, b in zip(r0, r1))


def test_feedback_method_likes_and_dislikes(plain):
    s = ChatSession(plain)
    s.send("calm piano music for studying")
    second, third = s.shown[1], s.shown[2]
    r = s.feedback(2, True)
    assert r.kind == "ack" and s.history()[-1].item == second and s.history()[-1].event == "like"
    r = s.feedback("it", False)  # "it" is the item mentioned last
    assert r.kind == "ack"
    assert second not in {x.item for x in s.history()} and second in s.excluded and second in s.disliked
    r = s.feedback(third, False)  # an id
    assert third in s.excluded
    again = s.send("calm piano music for studying")
    assert not {second, third} & set(_ids(again))
    assert s.feedback(99, True).kind == "error"


def test_liked_it_and_didnt_like_it(plain):
    s = ChatSession(plain)
    assert s.send("I liked it").kind == "error"  # nothing mentioned yet: a hint, not a guess
    s.send("I watched Heat")
    heat = plain.catalog.resolve("Heat").id
    assert s.send("I liked it").kind == "ack"
    assert s.history()[-1].item == heat and s.history()[-1].event == "like"
    assert s.send("didn't like it").kind == "ack"
    assert heat not in {x.item for x in s.history()} and heat in s.excluded


def test_no_horror_removes_horror(plain):
    s = ChatSession(plain, user="alice")
    r0 = s.send("scary films")
    assert any(_horror(plain.catalog.items[i]) for i in _ids(r0))  # there was horror to remove
    r = s.send("no horror")
    assert r.kind == "recommendations" and s.bans == ["horror"]
    assert not any(_horror(plain.catalog.items[i]) for i in _ids(r))
    later = s.send("something like Alien")
    assert len(_ids(later)) == 10
    assert not any(_horror(plain.catalog.items[i]) for i in _ids(later))
    assert s.send("no zzyzxgenre").kind == "error"


def test_i_watched_adds_to_history_and_is_never_recommended(plain):
    s = ChatSession(plain)
    heat = plain.catalog.resolve("Heat (1995)").id
    assert heat in _ids(ChatSession(plain).send("heist crime thriller"))  # it would be recommended
    r = s.send("I watched Heat")
    assert r.kind == "ack" and "Heat" in r.text
    assert [x.item for x in s.history()] == [heat] and s.history()[0].event == "watch"
    for msg in ("heist crime thriller", "more like 1", "a tense film about a master thief"):
        reply = s.send(msg)
        assert reply.kind == "recommendations"
        assert heat not in _ids(reply), msg
    r = s.send("I listened to Kind of Blue")
    assert r.kind == "ack"
    assert s.history()[-1].item == plain.catalog.resolve("Kind of Blue").id and s.history()[-1].event == "play"


def test_other_phrasings(plain):
    s = ChatSession(plain)
    r = s.send("I've seen Heat (1995) and loved it")
    assert r.kind == "ack" and s.history()[-1].event == "like"
    r = s.send("I listened to Kind of Blue and didn't like it")
    kob = plain.catalog.resolve("Kind of Blue").id
    assert r.kind == "ack" and kob in s.disliked and kob not in {x.item for x in s.history()}
    assert s.send("I hate horror").kind == "ack" and s.bans == ["horror"]  # no list yet to refresh
    s.send("a classic film")
    assert s.send("no westerns").kind == "recommendations" and "western" in s.bans
    s.send("like 1, 2")
    assert len(s.history()) == 3 and s.history()[-1].event == "like"  # Heat and the two liked ones
    assert s.send("I liked Alein").kind == "recommendations"  # not a title: read as a request


def test_ambiguous_title_asks_which(plain):
    s = ChatSession(plain)
    r = s.send("I watched Dune")
    assert r.kind == "clarify"
    assert set(r.options) == {"Dune (1984)", "Dune (2021)"}
    assert s.history() == []
    r = s.send("2")
    assert r.kind == "ack"
    assert [x.item for x in s.history()] == ["m-dune-2021"]
    # With the year it is not ambiguous.
    assert s.send("I watched Dune (1984)").kind == "ack"
    assert s.history()[-1].item == "m-dune-1984"


def test_unknown_title_and_bad_input_are_hints(plain):
    s = ChatSession(plain)
    r = s.send("I watched Zzyzx Qwerty Nonexistent")
    assert r.kind == "error" and "No title" in r.text
    r = s.send("I watched Alein")
    assert r.kind == "error" and "Alien (1979)" in r.text  # a suggestion
    assert s.send("").kind == "error"
    assert s.send("not 3").kind == "error"  # no list yet
    s.send("calm piano music for studying")
    r = s.send("not 99")
    assert r.kind == "error" and "1 to 10" in r.text
    assert s.send("more like 0").kind == "error"


def test_cancelled_answer_changes_nothing(plain):
    s = ChatSession(plain, user="alice")
    s.send("tense 80s sci-fi")
    shown, epoch = list(s.shown), s.epoch
    s.cancel()  # Ctrl-C in the REPL, before the worker got to the answer
    r = s.send("calm piano music for studying", epoch=epoch)
    assert r.kind == "info" and r.text == "cancelled" and r.result is None
    assert s.shown == shown and s.last_request == "tense 80s sci-fi"
    assert s.send("calm piano music for studying").kind == "recommendations"  # a new answer works


def test_vague_request(plain):
    empty = ChatSession(plain)
    assert is_vague("what should I watch next?") and not is_vague("calm piano music")
    assert empty.send("surprise me").kind == "error"
    s = ChatSession(plain, user="alice")
    r = s.send("what next?")
    assert r.kind == "recommendations"
    assert any("interest profile" in n for n in r.result.notes)
    assert r.result.request == "what next"


def test_profile_joins_retrieval_when_asked(plain):
    """use_profile mixes the history's interest profile into the text query of every answer."""
    from mediarec.rank.profile import profile_query

    off = ChatSession(plain, user="alice").send("tense 80s sci-fi").result
    s = ChatSession(plain, user="alice", use_profile=True)
    on = s.send("tense 80s sci-fi").result
    prof = s.profile()
    assert prof.source == "fallback" and profile_query(prof)  # no LLM: the profile from the data
    by_id = {c.item.id: c.text_score for c in off.candidates}
    common = [c for c in on.candidates if c.item.id in by_id]
    assert common and any(abs(c.text_score - by_id[c.item.id]) > 1e-6 for c in common)
    # a vague request already retrieves through the profile: it is not mixed in a second time
    vague = s.send("what next?").result
    assert any("interest profile" in n for n in vague.notes)
    assert ChatSession(plain, user="alice").use_profile is False


def test_save_load_round_trip(plain, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    s = ChatSession(plain, user="alice")
    s.send("something like Alien but funnier")
    s.send("not 1")
    s.send("no horror")
    s.send("I watched Heat")
    s.send(f"my key is {FAKE_KEY} by the way")  # typed into the chat: still never written
    path = tmp_path / "sessions" / "alice.json"
    path.parent.mkdir()
    path.write_text("old")
    path.chmod(0o644)
    s.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert FAKE_KEY not in text and "sk-" not in text
    data = json.loads(text)
    assert data["catalog"] == "demo" and data["user"] == "alice"
    assert not list(path.parent.glob("*.tmp"))

    back = ChatSession.load(path, plain)
    assert [x.model_dump() for x in back.interactions] == [x.model_dump() for x in s.interactions]
    assert back.excluded == s.excluded and back.bans == ["horror"] and back.disliked == s.disliked
    assert back.exclusions() == s.exclusions()
    assert [t.text for t in back.turns] == [t.text for t in s.state().turns] and len(back.turns) == 10
    assert "[redacted]" in back.turns[8].text
    assert back.last_request == "my key is [redacted] by the way" and back.shown == s.shown
    r = back.send("again")
    assert r.kind == "recommendations"
    assert not set(_ids(r)) & s.exclusions()
    assert plain.catalog.resolve("Heat").id in {x.item for x in back.history()}

    with pytest.raises(MediarecError):
        ChatSession.load(tmp_path / "missing.json", plain)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MediarecError):
        ChatSession.load(bad, plain)


@pytest.mark.llm
def test_session_with_the_real_tiny_llm(plain, home):
    smol = str(resolve("smollm2-135m", get_settings())["model"])
    rec = from_catalog(plain.catalog, llm=f"local:{smol}")
    assert isinstance(rec.llm, LocalLLM)
    rec.llm.n_threads = 1  # the test machine's cores are shared
    s = ChatSession(rec, user="alice", k=5)
    r = s.send("something like Alien but funnier")
    assert r.kind == "recommendations" and len(r.result.items) == 5
    assert any(st.startswith("llm-") for st in r.result.stages)
    gone = _ids(r)[0]
    # the LLM reasons that passed are kept for the session
    from mediarec.rank.explanations import facts_key

    written = {facts_key(x.item.id, x.evidence): x.reason for x in r.result.items if x.reason_source == "llm"}
    assert dict(s.reasons) == written
    r2 = s.send("not 1")
    assert r2.kind == "recommendations" and gone not in _ids(r2)
    # a repeated item with unchanged facts keeps its reason without asking the LLM again
    again = [x for x in r2.result.items[:5] if facts_key(x.item.id, x.evidence) in written]
    assert r2.result.explanations["reused"] <= len(again)
    assert r2.result.explanations["asked"] + r2.result.explanations["reused"] == 5
    for x in again:
        if x.reason == written[facts_key(x.item.id, x.evidence)]:
            assert x.reason_source == "llm"
    text = s.explain(1)
    assert isinstance(text, str) and text.strip()


# -- replays in chat (issue 28): a per-message request and a standing ":seen" toggle ----------------
@pytest.mark.parametrize("text,rest", [
    ("something to rewatch", "something"),
    ("an album I have heard before", "an album"),
    ("a comedy I've already seen", "a comedy"),
    ("rewatch something from the 90s", "something from the 90s"),
    ("one of my old favourites", "something"),
])
def test_replay_phrases_are_read_and_removed(text, rest):
    from mediarec.chat.intents import replay_request

    assert replay_request(text) == (True, rest)


@pytest.mark.parametrize("text", ["a thriller", "something like Alien but funnier", "seen it all, surprise me"])
def test_other_requests_are_no_replay_request(text):
    from mediarec.chat.intents import replay_request

    assert replay_request(text)[0] is False


def _liked_ids(plain, user):
    from mediarec.rank.evidence import split_history

    return {it.id for it in split_history(plain.catalog.history_pairs(plain.catalog.history(user)))[0]}


def test_a_rewatch_request_answers_from_the_liked_history_only_for_that_turn(plain):
    s = ChatSession(plain, user="alice")
    liked = _liked_ids(plain, "alice")
    r = s.send("a horror film I have seen before")
    assert r.kind == "recommendations", r.text
    ids = _ids(r)
    assert ids and set(ids) <= liked
    assert all(_horror(plain.catalog.items[i]) for i in ids)
    assert "I did not understand" not in r.text  # "seen before" is read, not left over
    after = s.send("a horror film")  # the next turn is back to new items
    consumed = {x.item for x in plain.catalog.history("alice")}
    assert not set(_ids(after)) & consumed


def test_a_rewatch_request_with_nothing_matching_says_so(plain):
    s = ChatSession(plain, user="alice")
    liked = [plain.catalog.items[i] for i in _liked_ids(plain, "alice")]
    genre = next(g for g in ("Comedy", "Animation", "Documentary", "Jazz")
                 if not any(g.lower() in (x.lower() for x in it.genres) for it in liked))
    r = s.send(f"a {genre.lower()} I have seen before")
    assert r.kind == "info" and r.text.startswith("Nothing you liked before matches"), r.text
    assert r.result is None


def test_seen_on_caps_replays_at_half_where_the_catalog_rarely_replays(plain):
    s = ChatSession(plain, user="alice")
    consumed = {x.item for x in plain.catalog.history("alice")}
    assert "Replays allowed" in s.set_include_seen(True)
    r = s.send("a sci-fi film")
    ids = _ids(r)
    replays = [i for i in ids if i in consumed]
    assert len(ids) == 10 and 1 <= len(replays) <= 5, replays
    assert any(n.startswith("replays are at most half") for n in r.result.notes)
    s.set_include_seen(False)
    assert not set(_ids(s.send("a sci-fi film"))) & consumed
    assert "as this catalog does" in s.set_include_seen(None)


def test_the_seen_command_in_the_chat_command(home):
    from conftest import run_cli

    p = run_cli("chat", "--dataset", "demo", "--user", "alice", "--llm", "none", home=home,
                stdin=":seen\n:seen on\n:seen maybe\n:seen off\n:quit\n")
    assert p.returncode == 0, p.stderr
    out = " ".join(p.stdout.split())
    assert "Replays: as the catalog does (auto)" in out
    assert "Replays allowed" in out and "No replays" in out
    assert "usage: :seen on | :seen off | :seen auto" in " ".join((p.stdout + p.stderr).split())
