"""``mediarec forget --dataset NAME --user ID`` on a real registered catalog (a slice of MovieLens 100k in the
generic format) with a real index, a feedback log, a saved chat session and an answer cache entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CliResult, copy_home, first_items, make_home, run_cli
from mediarec.catalog import Interaction, load_dataset, write_generic
from mediarec.chat.session import SessionState
from mediarec.infra.paths import Layout
from mediarec.llm.cache import AnswerCache

GONE = "forget-me-7"


@pytest.mark.slow
def test_forget_leaves_no_trace_under_home(tmp_path, shared_data, model_home):
    home = make_home(tmp_path / "home", model_home)
    cat = first_items(load_dataset("ml-100k", shared_data), 150, "films", users=250)  # user 1 among them
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

    p = run("forget", "--dataset", "films", "--user", GONE)
    assert p.returncode == 0, p.stderr
    assert f"events: films: removed 1 row(s) of {GONE} from {feedback}" in p.stdout
    assert "was not rewritten" in p.stdout and f"{own_rows} row(s)" in p.stdout
    assert f"files: deleted the saved chat session {session}" in p.stdout
    assert "collaborative collection films-cb" in p.stdout and "cleared the LLM answer cache" in p.stdout
    assert f"left: no file of films under {home} holds {GONE!r} any more" in p.stdout

    found = subprocess.run(["grep", "-rl", GONE, str(home), "--exclude-dir=models"], capture_output=True, text=True)
    assert found.returncode == 1, found.stdout  # grep finds the id nowhere
    assert (mine / "interactions.jsonl").read_text().count(GONE) == own_rows  # your file is yours
    assert '"user": "2"' in feedback.read_text()  # other people's feedback stays

    p = run("recommend", "--dataset", "films", "--user", GONE, "--llm", "none")
    assert p.returncode == 2 and "unknown user" in p.stderr
    p = run("recommend", "--dataset", "films", "--user", "2", "--llm", "none", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["items"]  # the models are rebuilt without them
    assert subprocess.run(["grep", "-rlq", GONE, str(home), "--exclude-dir=models"]).returncode == 1


# -- scoped per catalog (issue 28 item 3) -------------------------------------------------------
# The story: a catalog of your own with a user "u02", and the demo's unrelated "u02".
SAME_ID = "u02"


def _own_files(folder: Path, prefix: str, seed: int) -> Path:
    """items.jsonl (the demo's first 60 items, renamed) and interactions.csv (15 users u01..u15,
    8 plays each, ``u02`` among them) of a small catalog of your own."""
    import random

    from mediarec.catalog.loaders.demo import demo_dir

    folder.mkdir(parents=True, exist_ok=True)
    items = [json.loads(ln) for ln in (Path(str(demo_dir())) / "items.jsonl").read_text().splitlines()[:60]]
    with (folder / "items.jsonl").open("w") as f:
        for i, it in enumerate(items):
            f.write(json.dumps({**it, "id": f"{prefix}{i:03d}"}) + "\n")
    rnd, t = random.Random(seed), 1_600_000_000
    rows = ["user,item,timestamp,event"]
    for u in range(1, 16):
        for k in rnd.sample(range(60), 8):
            t += 100
            rows.append(f"u{u:02d},{prefix}{k:03d},{t},play")
    (folder / "interactions.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture(scope="module")
def three_catalogs(demo_home_template, tmp_path_factory) -> Path:
    """A home with the demo and two catalogs of your own ("mine", "other") indexed, each with its
    learned model; every one holds a user u02. Read-only: tests copy it."""
    home = copy_home(demo_home_template, tmp_path_factory.mktemp("three") / "home")
    data = tmp_path_factory.mktemp("three-data")
    for name, prefix, seed in (("mine", "a", 0), ("other", "b", 1)):
        folder = _own_files(data / name, prefix, seed)
        p = run_cli("index", "--catalog", str(folder), "--name", name, home=home)
        assert p.returncode == 0 and "second stage: learned" in p.stdout, (p.stdout, p.stderr)
    return home


def _hashes(home: Path) -> dict[str, str]:
    """sha256 of every file under ``home`` (the linked models folder aside), by relative path."""
    import hashlib
    import os

    out = {}
    for root, dirs, files in os.walk(home):
        dirs[:] = [d for d in dirs if not (Path(root) == home and d == "models")]
        for f in files:
            p = Path(root) / f
            out[str(p.relative_to(home))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _of(name: str, rel: str) -> bool:
    """Whether a home-relative path is one of catalog ``name``'s files."""
    parts = Path(rel).parts
    return (parts[0] == "catalogs" and parts[1] == name) or (parts[0] == "index" and (
        parts[1] in (name, f"{name}-eval", f"{name}-eval-enriched", f"{name}.lock"))) or \
        (parts[0] == "learned" and parts[1].startswith(f"{name}-")) or \
        rel == f"chat/{name}.history" or parts[:4] == ("cache", "llm", "catalogs", name)


def test_forget_in_one_catalog_leaves_every_other_catalog_byte_identical(three_catalogs, tmp_path):
    home = copy_home(three_catalogs, tmp_path / "home")
    layout = Layout(home)
    for name in ("mine", "demo", "other"):  # each catalog's LLM answers and chat line history are its own
        AnswerCache(layout.llm_cache_of(name)).put("a" * 64, {"text": f"ranked for {SAME_ID}'s history in {name}"})
        layout.chat.mkdir(exist_ok=True)
        layout.chat_history(name).write_text(f"something like Alien\nI am {SAME_ID}\n")
    before = _hashes(home)
    others = {p: h for p, h in before.items() if _of("demo", p) or _of("other", p)}
    assert any(p.startswith("learned/demo-") for p in others) and any(p.startswith("learned/other-") for p in others)
    assert "chat/demo.history" in others and any(p.startswith("cache/llm/catalogs/other/") for p in others)
    assert any(p.endswith(".npz") and "/demo/" in f"/{p}" for p in others)

    p = run_cli("forget", "--dataset", "mine", "--user", SAME_ID, home=home)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert f"forgot {SAME_ID} in mine: 8 event(s)" in out
    assert "models: mine: deleted" in out and "indexes: mine: deleted the collaborative collection mine-c" in out
    assert "demo:" not in out.replace("demo, other", "") and "other:" not in out
    assert "other catalogs: not touched; other, demo also hold(s) a user 'u02'" in out

    after = _hashes(home)
    assert {p: after.get(p) for p in others} == others  # byte-identical, nothing missing
    changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    assert changed and all(_of("mine", p) or p == "forgotten.json" for p in changed), changed
    assert not any(p.startswith("learned/mine-") for p in after)  # its learned model is gone
    assert not any(p.startswith("cache/llm/catalogs/mine/") for p in after) and "cleared the LLM answer cache" in out
    assert layout.chat_history("mine").read_text() == "something like Alien\n"  # the line naming them is gone

    def users(name: str) -> set[str]:
        code = f"from mediarec.catalog import load_dataset; print(' '.join(load_dataset({name!r}).by_user))"
        q = subprocess.run([sys.executable, "-c", code],
                           env={**os.environ, "MEDIAREC_HOME": str(home)}, capture_output=True, text=True, check=True)
        return set(q.stdout.split())

    assert SAME_ID not in users("mine") and SAME_ID in users("demo") and SAME_ID in users("other")
    p = run_cli("recommend", "--dataset", "demo", "--user", SAME_ID, "--llm", "none", "--json", home=home)
    assert p.returncode == 0 and json.loads(p.stdout)["items"], p.stderr  # the demo's u02 is served as before
    assert _hashes(home).get("forgotten.json") == after["forgotten.json"]


@pytest.mark.parametrize("args", [("--dataset", "mine", "--user", "nobody-here"),
                                  ("--all-catalogs", "--user", "nobody-here"),
                                  ("--user", SAME_ID),
                                  ("--dataset", "no-such-catalog", "--user", SAME_ID)])
def test_forget_refuses_without_writing_anything(three_catalogs, tmp_path, args):
    home = copy_home(three_catalogs, tmp_path / "home")
    before = _hashes(home)
    p = run_cli("forget", *args, home=home)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert ("unknown user 'nobody-here'" in p.stderr and "nothing was forgotten or deleted" in p.stderr) \
        if "nobody-here" in args else ("--all-catalogs" in p.stderr or "unknown dataset" in p.stderr)
    assert _hashes(home) == before


def test_forget_all_catalogs_and_add_after_forget(three_catalogs, tmp_path):
    """--all-catalogs reaches every catalog; `add` of a forgotten person's rows is refused (nothing
    written) unless --readmit, which says so; every count printed is read back from disk."""
    from mediarec.catalog.own import registration

    home = copy_home(three_catalogs, tmp_path / "home")
    p = run_cli("forget", "--all-catalogs", "--user", "u03", home=home)
    assert p.returncode == 0, p.stderr
    for name in ("mine", "other", "demo"):
        assert f"forgot u03 in {name}:" in p.stdout and f"models: {name}: deleted" in p.stdout
    assert "every load of every catalog leaves u03's interactions out" in p.stdout

    more = tmp_path / "more.csv"
    more.write_text("user,item,timestamp,event\n" + "".join(f"{SAME_ID},a{k:03d},{1_650_000_000 + k},play\n"
                                                           for k in (1, 2, 3)) + "u01,a004,1650000009,play\n")
    assert run_cli("forget", "--dataset", "mine", "--user", SAME_ID, home=home).returncode == 0
    registration_before, rows_before = (home / "catalogs/mine/catalog.json").read_text(), _rows("mine", home)
    p = run_cli("add", "--dataset", "mine", "--interactions", str(more), "--wait", home=home)
    assert p.returncode == 2 and f"{SAME_ID} (3 row(s))" in p.stderr and "--readmit" in p.stderr
    assert (home / "catalogs/mine/catalog.json").read_text() == registration_before
    assert not (home / "catalogs/mine/added").exists() and _rows("mine", home) == rows_before

    p = run_cli("add", "--dataset", "mine", "--interactions", str(more), "--wait", "--readmit", home=home)
    assert p.returncode == 0, p.stderr
    assert f"readmitted {SAME_ID} to mine" in p.stdout
    after = _rows("mine", home)
    assert f"added 0 items and 4 interactions to mine (now 60 items, {len(after)} interactions)" in p.stdout
    assert len(after) == len(rows_before) + 4  # every row counted is a row read back
    assert [x.item for x in after if x.user == SAME_ID] == ["a001", "a002", "a003"]  # the earlier 8 stay out
    copy = registration("mine", home).interactions[-1]
    assert Path(copy).read_text().count(f"{SAME_ID},") == 3
    p = run_cli("recommend", "--dataset", "mine", "--user", SAME_ID, "--llm", "none", "--json", home=home)
    assert p.returncode == 0, p.stderr

    # forgotten again: the readmitted rows leave the copy mediarec kept; the count printed is what left it
    p = run_cli("forget", "--dataset", "mine", "--user", SAME_ID, home=home)
    assert p.returncode == 0 and f"removed 3 row(s) of {SAME_ID} from {copy}" in p.stdout, p.stdout
    assert Path(copy).read_text().count(f"{SAME_ID},") == 0 and Path(copy).read_text().count("u01,") == 1
    assert SAME_ID not in {x.user for x in _rows("mine", home)}


def _rows(name: str, home: Path):
    """The interactions of catalog ``name`` as a fresh process loads them from disk."""
    from mediarec.catalog import Interaction

    code = ("import json; from mediarec.catalog import load_dataset; "
            f"print(json.dumps([x.model_dump() for x in load_dataset({name!r}).interactions]))")
    q = subprocess.run([sys.executable, "-c", code],
                       env={**os.environ, "MEDIAREC_HOME": str(home)}, capture_output=True, text=True, check=True)
    return [Interaction(**x) for x in json.loads(q.stdout)]


def test_format_1_list_still_forgets_in_every_catalog(three_catalogs, tmp_path):
    """A forgotten.json written before the lists were per catalog meant "everywhere": it still does."""
    import hashlib

    home = copy_home(three_catalogs, tmp_path / "home")
    salt = "00" * 16
    (home / "forgotten.json").write_text(json.dumps(
        {"salt": salt, "users": [hashlib.sha256(f"{salt}\t{SAME_ID}".encode()).hexdigest()]}))
    for name in ("mine", "other", "demo"):
        assert SAME_ID not in {x.user for x in _rows(name, home)}
    assert "u01" in {x.user for x in _rows("mine", home)}


def test_all_catalogs_overrides_a_readmission(tmp_path, monkeypatch):
    """Readmitted in one catalog, then forgotten everywhere: left out there too."""
    from mediarec.catalog.forgotten import entry, is_forgotten, readmit, remember_forgotten

    home = tmp_path / "home"
    remember_forgotten(SAME_ID, "mine", home, clean=True)
    readmit(SAME_ID, "mine", home)
    assert not is_forgotten(SAME_ID, "mine", home) and entry(SAME_ID, "mine", home)["readmitted"]
    assert entry(SAME_ID, "demo", home) is None and entry(SAME_ID, "ml-100k", home) is None
    remember_forgotten(SAME_ID, "*", home)
    assert is_forgotten(SAME_ID, "mine", home) and is_forgotten(SAME_ID, "movielens-100k", home)
    assert entry(SAME_ID, "ml-100k", home) == {"clean": False, "readmitted": False}  # an alias: the same catalog
