"""``mediarec forget --user ID`` on a real registered catalog (a slice of MovieLens 100k in the
generic format) with a real index, a feedback log, a saved chat session and an answer cache entry."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import CliResult, first_items, make_home, run_cli
from mediarec.catalog import Interaction, load_dataset, write_generic
from mediarec.chat.session import SessionState
from mediarec.llm.cache import AnswerCache

GONE = "forget-me-7"


@pytest.mark.slow
def test_forget_leaves_no_trace_under_home(tmp_path, shared_data, model_home):
    home = make_home(tmp_path / "home", model_home)
    cat = first_items(load_dataset("ml-100k", shared_data), 150, "films")
    renamed = [x.model_copy(update={"user": GONE}) if x.user == "1" else x for x in cat.interactions]
    mine = tmp_path / "mine"
    write_generic(cat.replace(interactions=renamed), mine / "items.jsonl", mine / "interactions.jsonl")
    own_rows = (mine / "interactions.jsonl").read_text().count(GONE)
    assert own_rows > 10

    def run(*args: str) -> CliResult:
        return run_cli(*args, home=home)

    assert run("index", "--catalog", str(mine), "--name", "films", "--quiet").returncode == 0
    # what mediarec itself keeps about the person: the chat feedback log, a saved session, a cached answer
    feedback = home / "catalogs" / "films" / "feedback.jsonl"
    item = next(iter(cat.items))
    feedback.write_text(json.dumps({"user": GONE, "item": item, "timestamp": 1.0, "event": "like"}) + "\n"
                        + json.dumps({"user": "2", "item": item, "timestamp": 2.0, "event": "like"}) + "\n")
    session = home / "sessions" / "mine.json"
    session.parent.mkdir()
    session.write_text(SessionState(catalog="films", user=GONE,
                                    interactions=[Interaction(user=GONE, item=item, event="like")]).model_dump_json())
    AnswerCache(home / "cache" / "llm").put("k" * 64, {"text": "ranked for a history"})
    assert run("recommend", "--dataset", "films", "--user", GONE, "--llm", "none").returncode == 0
    assert subprocess.run(["grep", "-rlq", GONE, str(home), "--exclude-dir=models"]).returncode == 0

    p = run("forget", "--user", GONE)
    assert p.returncode == 0, p.stderr
    assert f"removed 1 interaction(s) from {feedback}" in p.stdout
    assert "was not rewritten" in p.stdout and f"{own_rows} row(s)" in p.stdout
    assert f"deleted the saved chat session {session}" in p.stdout
    assert "collaborative collection films-cb" in p.stdout and "cleared the LLM answer cache" in p.stdout
    assert f"no file under {home} holds {GONE!r} any more" in p.stdout

    found = subprocess.run(["grep", "-rl", GONE, str(home), "--exclude-dir=models"], capture_output=True, text=True)
    assert found.returncode == 1, found.stdout  # grep finds the id nowhere
    assert (mine / "interactions.jsonl").read_text().count(GONE) == own_rows  # your file is yours
    assert '"user": "2"' in feedback.read_text()  # other people's feedback stays

    p = run("recommend", "--dataset", "films", "--user", GONE, "--llm", "none")
    assert p.returncode == 2 and "unknown user" in p.stderr
    p = run("recommend", "--dataset", "films", "--user", "2", "--llm", "none", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["items"]  # the models are rebuilt without them
    assert subprocess.run(["grep", "-rlq", GONE, str(home), "--exclude-dir=models"]).returncode == 1
