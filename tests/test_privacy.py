"""Privacy: what leaves the machine, and what is written to disk.

* Every prompt the agent sends (rank, repair, score, explain, profile) for real MovieLens 100k
  users, captured where it arrives: at a scripted OpenAI-compatible HTTP server on 127.0.0.1. No
  user id, no occupation or zip code from ``u.user``, no timestamp: only titles, years, genres
  and ratings.
* An API key in ``OPENAI_API_KEY``: hosted requests (one server even echoes the key in its error
  message), a saved chat session, an evaluation report and the LLM answer cache are written,
  then every file under MEDIAREC_HOME, the eval output folder and the session file is scanned for
  the key; logs (DEBUG and up) too. The cache and session files are readable by their owner only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from collections import Counter
from pathlib import Path

import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from mediarec.recommender import Recommender  # noqa: E402
from mediarec.catalog import load_dataset  # noqa: E402
from mediarec.llm import AnswerCache, LLMOptions, OpenAILLM  # noqa: E402
from mediarec.rank.profile import MAX_HISTORY as PROFILE_MAX_HISTORY, build_profile  # noqa: E402
from mediarec.rank.reranker import Reranker, RerankSettings  # noqa: E402
from mediarec.rank.prompts import compact_title, fmt_rating, plain_list  # noqa: E402
from mediarec.index.retriever import Candidate  # noqa: E402

from conftest import openai_completion, run_cli  # noqa: E402
from mediarec.app import from_catalog
from mediarec.chat.session import ChatSession

KEY = "sk-fake-known-key-XYZ"
LABEL_LINE = re.compile(r"^([A-Za-z]): ")
DISTINCT_JOBS = {"programmer", "technician", "librarian", "healthcare", "engineer", "scientist", "lawyer",
                 "administrator", "educator", "executive", "marketing", "salesman", "homemaker"}


# -- a scripted OpenAI-compatible server that answers each prompt kind validly ----------------
def _labels_in(text: str) -> list[str]:
    return [m.group(1) for m in (LABEL_LINE.match(ln) for ln in text.splitlines()) if m]


def _answer(req: dict) -> dict:
    msgs = req.get("messages") or []
    system = next((m["content"] for m in msgs if m["role"] == "system"), "")
    user = msgs[-1]["content"] if msgs else ""
    if req.get("logprobs"):
        labs = _labels_in(user)
        return openai_completion(labs[0], [(lab, -0.5 - 0.3 * k) for k, lab in enumerate(labs)])
    if '"themes"' in system:
        return openai_completion(json.dumps({"themes": ["space"], "moods": ["tense"], "genres": ["sci-fi"],
                                       "eras": ["1980s"], "keywords": ["aliens"], "summary": "Likes tense sci-fi."}))
    if '{"reasons"' in system + user:  # the explain prompt asks for this shape at the end of its user message
        return openai_completion(json.dumps({"reasons": [{"id": lab, "reason": "Like your favourites."}
                                                   for lab in _labels_in(user)]}))
    if '{"ranking"' in system:
        if not any(m["role"] == "assistant" for m in msgs):
            return openai_completion("Sure! You will love the first one.")  # invalid: the repair prompt follows
        first_user = next(m["content"] for m in msgs if m["role"] == "user")
        n = int(re.search(r"exactly (\d+) entries", first_user).group(1))
        return openai_completion(json.dumps({"ranking": [{"id": lab, "reason": "Fits your taste."}
                                                   for lab in _labels_in(first_user)[:n]]}))
    return openai_completion("hello")


@pytest.fixture
def wire(scripted_openai_server):
    """``make(echo_key=False)``: a server answering every prompt validly (``_answer``) and recording it;
    with ``echo_key`` it answers 401 quoting the key it was sent."""

    def make(echo_key: bool = False):
        def handle(path, body, headers):
            if echo_key:
                key = headers.get("authorization", "").removeprefix("Bearer ")
                return 401, {}, {"error": {"message": f"Incorrect API key provided: {key}",
                                           "type": "invalid_request_error"}}
            return 200, {}, _answer(body)

        return scripted_openai_server(handle)

    return make


# =============================================================================================
# prompts carry items, never the person
# =============================================================================================
@pytest.fixture(scope="module")
def people(shared_data) -> dict[str, dict]:
    """u.user: id | age | gender | occupation | zip code."""
    out = {}
    for line in (shared_data / "ml-100k" / "u.user").read_text(encoding="latin-1").splitlines():
        uid, age, gender, job, zipcode = line.split("|")
        out[uid] = {"age": age, "gender": gender, "occupation": job, "zip": zipcode}
    return out


def _kind(messages: list[dict], req: dict) -> str:
    text = "\n".join(m["content"] for m in messages)  # the answer's shape may be asked in either message
    if req.get("logprobs"):
        return "score"
    if any(m["role"] == "assistant" for m in messages):
        return "repair"
    return "profile" if '"themes"' in text else "explain" if '{"reasons"' in text else "rank"


def test_prompts_on_the_wire_carry_no_personal_data(ml100k, people, wire):
    srv = wire()
    llm = OpenAILLM("smollm2", base_url=srv.base_url, api_key=KEY, options=LLMOptions(timeout=10, retries=0),
                    cache=AnswerCache(None, enabled=False))
    popular = [i for i, _ in Counter(x.item for x in ml100k.interactions).most_common(200)]
    users = [u for u, hist in ml100k.by_user.items()
             if len(u) == 3 and 20 <= len(hist) and people[u]["occupation"] in DISTINCT_JOBS][:4]
    assert len(users) == 4
    for user in users:
        person = people[user]
        hist = ml100k.history(user)
        pairs = [(ml100k.item(x.item), x) for x in hist]
        seen = {x.item for x in hist}
        cands = [Candidate(item=ml100k.item(i), score=1.0 - k / 100)
                 for k, i in enumerate([i for i in popular if i not in seen][:20])]
        start = len(srv.requests)
        listed = Reranker(llm, settings=RerankSettings(mode="list", max_attempts=2)).rerank(pairs, cands, k=5)
        scored = Reranker(llm, settings=RerankSettings(mode="score")).rerank(pairs, cands, k=5, explain=True)
        profile = build_profile(llm, None, pairs)
        assert not listed.degraded and listed.repaired, listed.degraded_reason
        assert not scored.degraded and scored.reasons and not scored.explain_error
        assert profile.summary == "Likes tense sci-fi."
        sent = srv.requests[start:]
        assert {_kind(b["messages"], b) for b in sent} == {"rank", "repair", "score", "explain", "profile"}

        leak_id = re.compile(rf"(?<![0-9A-Za-z]){re.escape(user)}(?![0-9A-Za-z])")
        stamps = {str(int(x.timestamp)) for x in hist}
        allowed = {f"- {compact_title(ml100k.item(x.item))}{kind}"  # the kind where the prompt mixes kinds
                   + (f" {plain_list(ml100k.item(x.item).genres)}" if ml100k.item(x.item).genres else "")
                   + (f" {fmt_rating(x.rating)}/5" if x.rating else "") for x in hist for kind in ("", " movie")}
        for body in sent:
            text = "\n".join(m["content"] for m in body["messages"])
            assert not leak_id.search(text), f"user id {user} in a {_kind(body['messages'], body)} prompt"
            assert person["zip"] not in text
            assert not re.search(rf"\b{person['occupation']}\b", text, re.I), person["occupation"]
            assert not any(s in text for s in stamps), "a timestamp reached the prompt"
            assert not re.search(r"\b\d{9,10}\b", text), "a unix time reached the prompt"
            assert user not in json.dumps({k: v for k, v in body.items() if k != "messages"})
            # the history lines are items only: title 'year, genres, a rating, and nothing else
            if "<<<HISTORY" in text:
                block = text.split("<<<HISTORY\n")[1].split("\n>>>")[0].splitlines()
                kind = _kind(body["messages"], body)
                cap = PROFILE_MAX_HISTORY if kind == "profile" else RerankSettings().max_history
                assert len(block) == min(len(hist), cap)
                assert set(block) <= allowed, set(block) - allowed
        newest = ml100k.item(hist[-1].item).title
        assert any(newest[:20] in m["content"] for b in sent for m in b["messages"])


# =============================================================================================
# the API key is never written down
# =============================================================================================
@pytest.fixture
def home(linked_home) -> Path:
    return linked_home


def _files(*roots: Path) -> list[Path]:
    """Every regular file under the roots, not following links (models/ is a link to a shared cache)."""
    out = []
    for root in roots:
        if root.is_file():
            out.append(root)
            continue
        for dirpath, _dirs, names in os.walk(root):
            out += [Path(dirpath) / n for n in names if not (Path(dirpath) / n).is_symlink()]
    return out


def test_api_key_is_never_written(home, tmp_path, wire, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    srv = wire()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    demo = load_dataset("demo")

    # hosted recommendations (list mode, answers cached under MEDIAREC_HOME)
    rec = from_catalog(demo, llm="openai:smollm2")
    assert isinstance(rec.llm, OpenAILLM) and rec.llm.cache.enabled
    res = rec.recommend(user="alice", k=5)
    assert not res.degraded, res.degraded_reason
    again = rec.recommend(user="alice", k=5)
    assert again.usage.cached and [r.item.id for r in again.items] == [r.item.id for r in res.items]
    auth = [h.get("authorization", "") for h in srv.headers]
    assert auth and all(a == f"Bearer {KEY}" for a in auth)  # the key was really used
    assert KEY not in repr(rec.llm) and KEY not in res.model_dump_json()

    # a server that quotes the key back in its error: the degraded answer does not carry it
    echo = wire(echo_key=True)
    leaky = Recommender(demo, rec.index, llm=OpenAILLM("smollm2", base_url=echo.base_url,
                                                        options=LLMOptions(timeout=5, retries=0)))
    bad = leaky.recommend(user="alice", k=5)
    assert echo.requests and bad.degraded and "401" in bad.degraded_reason
    assert KEY not in bad.model_dump_json(), bad.degraded_reason

    # a saved chat session (the key even typed into the chat)
    session_file = tmp_path / "sessions" / "alice.json"
    chat = ChatSession(rec, user="alice", k=5)
    chat.send("something tense and dark")
    chat.send(f"my key is {KEY}, more like 1")
    chat.recommender = leaky  # a turn whose answer degraded with the echoed key
    chat.send("something funny")
    chat.save(session_file)

    # an evaluation report, from the command (verbose logging) with the key in its environment
    out = tmp_path / "eval-out"
    p = run_cli("-v", "eval", "--dataset", "demo", "--systems", "pop,hybrid", "--llm", "none",
                "--quiet", "--output", str(out), home=home, env={"OPENAI_API_KEY": KEY})
    assert p.returncode == 0, p.stderr
    assert (out / "metrics.json").is_file() and (out / "report.md").is_file()
    assert KEY not in p.stdout and KEY not in p.stderr

    files = _files(home, out, session_file)
    cache_files = [f for f in files if (home / "cache" / "llm") in f.parents]
    assert len(cache_files) >= 2 and session_file in files
    for f in files:
        assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in caplog.text
    assert any(r.levelno <= logging.INFO for r in caplog.records)  # logging was on, and captured

    # user-only permissions: the answer cache and the session
    cache = home / "cache" / "llm"
    for d in [cache, *(p for p in cache.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in cache_files + [session_file]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
