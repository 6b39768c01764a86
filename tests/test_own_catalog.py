"""Your own catalog from the command line: real files (a slice of MovieLens 100k written in the
generic format), registered by ``mediarec index``, then served by name on every command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CliResult, first_items, make_home, run_cli
from mediarec.catalog import load_dataset, load_generic, write_generic
from mediarec.catalog.own import load_registered, registration

SLICE = 200
USERS = 250


@pytest.fixture(scope="module")
def own_files(tmp_path_factory, shared_data) -> Path:
    """items.jsonl + interactions.csv of 200 real films and the histories of 250 real users, as a
    user would bring them (all 814 users' 30k rows made each index train its learned stage for
    most of a minute; what is tested here is the files' path through every command)."""
    folder = tmp_path_factory.mktemp("films")
    cat = first_items(load_dataset("ml-100k", shared_data), SLICE, "films")
    keep = set(cat.users()[:USERS])
    cat = cat.replace(interactions=[x for x in cat.interactions if x.user in keep])
    write_generic(cat, folder / "items.jsonl", folder / "interactions.csv")
    return folder


@pytest.fixture(scope="module")
def home(tmp_path_factory, model_home) -> Path:
    return make_home(tmp_path_factory.mktemp("own-home"), model_home)


@pytest.fixture(scope="module")
def run(home):
    def run_here(*args: str, stdin: str | None = None) -> CliResult:
        return run_cli(*args, home=home, stdin=stdin)
    return run_here


def _ok(p: CliResult) -> str:
    assert p.returncode == 0, (p.stdout, p.stderr)
    return p.stdout


def test_index_registers_files_and_every_command_serves_them(run, home, own_files):
    out = _ok(run("index", "--items", str(own_files / "items.jsonl"), "--interactions",
                  str(own_files / "interactions.csv"), "--name", "films", "--quiet"))
    assert f"indexed films: {SLICE} items" in out
    reg = json.loads((home / "catalogs" / "films" / "catalog.json").read_text())
    assert reg["items"] == [str((own_files / "items.jsonl").resolve())]
    assert reg["interactions"] == [str((own_files / "interactions.csv").resolve())]
    assert (home / "index" / "films").is_dir()

    user = load_generic(own_files / "items.jsonl", own_files / "interactions.csv").users()[0]
    result = json.loads(_ok(run("recommend", "--dataset", "films", "--user", user, "--llm", "none", "--json", "-k", "5")))
    assert len(result["items"]) == 5
    seen = {x.item for x in load_generic(own_files / "items.jsonl", own_files / "interactions.csv").history(user)}
    assert not seen & {r["item"]["id"] for r in result["items"]}

    _ok(run("eval", "--dataset", "films", "--systems", "pop", "--users", "20", "--quiet",
            "--output", str(home.parent / "eval-out")))
    metrics = json.loads((home.parent / "eval-out" / "metrics.json").read_text())
    assert "films" in json.dumps(metrics) and "pop" in json.dumps(metrics)


def test_catalog_folder_and_on_the_fly_recommend(run, home, own_files):
    p = run("recommend", "--catalog", str(own_files), "--history", "Toy Story", "--llm", "none", "--json", "-k", "3")
    result = json.loads(_ok(p))
    assert len(result["items"]) == 3
    assert f"--dataset {own_files.name} serves it" in p.stderr  # named after the folder
    assert (home / "catalogs" / own_files.name / "catalog.json").is_file()


def test_chat_takes_the_files_directly(run, home, own_files):
    p = run("chat", "--items", str(own_files / "items.jsonl"), "--name", "films-chat", "--llm", "none",
            stdin="something like Toy Story\n:quit\n")
    _ok(p)
    assert "films-chat" in p.stdout and (home / "catalogs" / "films-chat" / "catalog.json").is_file()


def test_errors_name_the_file_and_the_line(run, own_files, tmp_path):
    bad = tmp_path / "interactions.csv"
    lines = (own_files / "interactions.csv").read_text().splitlines()[:5]
    lines[3] = lines[3].replace(lines[3].split(",")[1], "no-such-item", 1)
    bad.write_text("\n".join(lines) + "\n")
    p = run("index", "--items", str(own_files / "items.jsonl"), "--interactions", str(bad), "--name", "broken")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{bad}:4: unknown item 'no-such-item'" in p.stderr
    p = run("index", "--items", str(own_files / "items.jsonl"), "--name", "movielens-100k")
    assert p.returncode == 2 and "is a built-in dataset" in p.stderr
    p = run("recommend", "--dataset", "never-registered", "--user", "1", "--llm", "none")
    assert p.returncode == 2 and "mediarec index --items FILE" in p.stderr


def test_chat_feedback_reaches_the_log_and_the_next_build(run, home, own_files):
    _ok(run("index", "--catalog", str(own_files), "--name", "films-fb", "--quiet", "--no-tune"))  # the feedback is the subject
    p = run("chat", "--dataset", "films-fb", "--user", "newcomer", "--llm", "none", "--save-feedback",
            stdin="something like Toy Story\nmore like 1\nI watched Four Rooms\ndidn't like it\n:quit\n")
    assert "new to films-fb" in _ok(p)
    log = home / "catalogs" / "films-fb" / "feedback.jsonl"
    events = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert [e["event"] for e in events] == ["like", "watch", "dislike"]
    assert {e["user"] for e in events} == {"newcomer"} and events[1]["item"] == events[2]["item"]
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    before = load_generic(own_files / "items.jsonl", own_files / "interactions.csv")
    assert len(load_registered(registration("films-fb", home)).interactions) == len(before.interactions) + 3
    out = _ok(run("index", "--dataset", "films-fb", "--quiet", "--no-tune"))
    assert "indexed films-fb" in out
    result = json.loads(_ok(run("recommend", "--dataset", "films-fb", "--user", "newcomer", "--llm", "none",
                                "--json", "-k", "5")))
    assert events[0]["item"] not in {r["item"]["id"] for r in result["items"]}  # liked: now history
    p = run("chat", "--dataset", "movielens-100k", "--save-feedback", "--llm", "none", stdin=":quit\n")
    assert p.returncode == 2 and "not one: register your files" in p.stderr


def test_feedback_is_read_before_added_copies(own_files, tmp_path):
    """The order ``add`` extends a served catalog in (its rows last), so reloading gives the same catalog."""
    from mediarec.catalog.own import register

    reg, first = register("order", own_files / "items.jsonl", own_files / "interactions.csv", home=tmp_path)
    user, item = first.interactions[0].user, first.interactions[0].item
    reg.feedback_path.write_text(json.dumps({"user": "fb", "item": item, "event": "like"}) + "\n")
    added = reg.added_dir / "1-interactions.jsonl"
    added.parent.mkdir()
    added.write_text(json.dumps({"user": user, "item": item, "event": "watch"}) + "\n")
    reg.interactions.append(str(added))
    reg.save()
    assert reg.interaction_files() == [own_files / "interactions.csv", reg.feedback_path, added]
    grown = load_registered(registration("order", tmp_path))
    assert [x.user for x in grown.interactions[-2:]] == ["fb", user]
    assert grown.fingerprint() == first.extend(interactions=grown.interactions[-2:]).fingerprint()
