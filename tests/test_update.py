"""Incremental updates (index/update.py) on real MovieLens 100k rows with real Chroma: new items are
embedded alone, new interactions refit the collaborative side beside the old one, the result equals
a full rebuild, and ``kill -9`` in the middle of ``mediarec add`` leaves the previous index usable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_command, cli_env, first_items, make_home
from mediarec.catalog import load_dataset, write_generic
from mediarec.app import add_interactions, add_items, from_catalog
from mediarec.config import Settings

N, NEW = 300, 60

pytestmark = pytest.mark.slow  # real processes: kill -9, background refits and retrains (minutes in all)


def _parts(shared_data, users: int):
    """(base catalog, new items, new interactions): the last 60 of 300 films arrive later (without
    their ratings), and so do the 300 latest ratings of the rest; the histories of ``users`` users."""
    whole = first_items(load_dataset("ml-100k", shared_data), N, "upd", users=users)
    ids = list(whole.items)
    new_ids = set(ids[-NEW:])
    rest = [x for x in whole.interactions if x.item not in new_ids]
    latest = set(sorted(range(len(rest)), key=lambda k: (rest[k].timestamp, k))[-300:])
    base = whole.replace(items=[whole.items[i] for i in ids if i not in new_ids],
                         interactions=[x for k, x in enumerate(rest) if k not in latest])
    return base, [whole.items[i] for i in ids[-NEW:]], [x for k, x in enumerate(rest) if k in latest]


@pytest.fixture(scope="module")
def parts(shared_data):
    """500 users: enough for the learned stage to pass its gate and for two trainings to agree
    within the documented tolerance (250 gave an overlap of 0.63)."""
    return _parts(shared_data, 500)


@pytest.fixture(scope="module")
def few(shared_data):
    """250 users, for the tests of the collaborative refit and of kill -9 (each background job
    also retrains the learned stage: fewer users make it quicker; its quality is not tested there)."""
    return _parts(shared_data, 250)


def _rec(catalog, home):
    return from_catalog(catalog, llm="none", settings=Settings(home=home))


def test_updates_embed_only_what_is_new_and_equal_a_full_rebuild(parts, tmp_path, model_home):
    base, items, interactions = parts
    rec = _rec(base, make_home(tmp_path / "a", model_home))
    fit_before = rec.index._collab_names()

    grown = add_items(rec, items)
    assert rec.index.embedded == NEW and not rec.index.collab_refit  # no new ratings: same fit
    assert rec.index._collab_names() == fit_before and len(rec.catalog.items) == N == len(grown.items)
    hits = rec.recommend(query=items[0].title, k=5, explain=False).items
    assert items[0].id in {h.item.id for h in hits}  # a new item is found at once

    # New items alone keep the learned model (carried over to the new key); a full rebuild retrains it
    items_only = _rec(grown, make_home(tmp_path / "c", model_home))
    assert rec.stage.ranker.meta.get("carried_over_from") and "carried_over_from" not in items_only.stage.ranker.meta
    users = grown.users()[:20]
    overlap = np.mean([len({r.item.id for r in rec.recommend(user=u, k=10, explain=False).items}
                           & {r.item.id for r in items_only.recommend(user=u, k=10, explain=False).items}) / 10
                       for u in users])
    print(f"items-only update vs full rebuild: mean top-10 overlap {overlap:.3f} over {len(users)} users")
    assert overlap >= 0.8  # the documented tolerance (docs/formats.md, "The index of a catalog")

    add_interactions(rec, interactions)
    assert rec.index.embedded == 0 and rec.index.collab_refit
    assert rec.index._collab_names() != fit_before
    names = {c.name for c in rec.index.client.list_collections()}
    assert fit_before[0] not in names and rec.index._collab_names()[0] in names  # the old fit was pruned

    full = _rec(rec.catalog, make_home(tmp_path / "b", model_home))
    assert full.index.text_fingerprint() == rec.index.text_fingerprint()
    assert full.index.collab_fingerprint() == rec.index.collab_fingerprint()
    assert np.abs(full.index.text_vectors - rec.index.text_vectors).max() < 1e-5
    assert full.index.collab.item_ids == rec.index.collab.item_ids
    assert np.allclose(full.index.collab.matrix, rec.index.collab.matrix, atol=1e-6)
    for user in rec.catalog.users()[:20]:
        a = [r.item.id for r in rec.recommend(user=user, k=10, explain=False).items]
        b = [r.item.id for r in full.recommend(user=user, k=10, explain=False).items]
        assert a == b, user


_CHECK = """
import json
from mediarec.catalog import load_dataset
from mediarec.index.store import open_index
from mediarec.recommender import Recommender
cat = load_dataset("upd")
idx = open_index(cat, build=False)  # a reader: it fails on a missing, partial or stale index
rec = Recommender(cat, idx)
print(json.dumps({"items": len(cat.items), "current": idx.is_current(),
                  "top": [r.item.id for r in rec.recommend(user=cat.users()[0], k=5, explain=False).items]}))
"""


def test_kill_9_during_add_leaves_the_previous_index_usable(few, tmp_path, model_home):
    items = few[1]
    home, files, env = _registered(few, tmp_path, model_home)
    cli = cli_command()
    registration = (home / "catalogs" / "upd" / "catalog.json").read_text()

    def check() -> dict:
        q = subprocess.run([sys.executable, "-c", _CHECK], env=env, capture_output=True, text=True, timeout=300)
        assert q.returncode == 0, q.stderr
        return json.loads(q.stdout)

    before = check()
    assert before == {"items": N - NEW, "current": True, "top": before["top"]} and len(before["top"]) == 5
    killed = 0
    # Kill at different moments (starting, loading, embedding, fitting, training): on an idle machine
    # the whole add takes about 4 s, so the first kill comes well before that.
    for delay in (1.0, 2.5, 4.0, 7.0, 10.0):
        add = subprocess.Popen([*cli, "add", "--dataset", "upd", "--items", str(files / "new-items.jsonl"), "--quiet"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        finished = add.poll() is not None
        add.send_signal(signal.SIGKILL)
        add.wait()
        if finished:
            break
        killed += 1
        state = check()
        if (home / "catalogs" / "upd" / "catalog.json").read_text() != registration:
            assert state["items"] == N and state["current"]  # killed after its commit: the new one serves
            break
        assert state == before  # not committed: the previous catalog and index serve as before
    assert killed  # at least one add died before it finished
    if (home / "catalogs" / "upd" / "catalog.json").read_text() == registration:  # no attempt got to commit
        p = subprocess.run([*cli, "add", "--dataset", "upd", "--items", str(files / "new-items.jsonl")], env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        assert f"added {NEW} items and 0 interactions" in p.stdout
        # ids an interrupted add embedded are not embedded twice: at most all of them, once
        assert int(p.stdout.split(" items embedded")[0].rsplit(" ", 1)[1]) <= NEW
    after = check()
    assert after["items"] == N and after["current"]
    # the same rows again: an error naming the file and the line, and nothing changes
    registration = (home / "catalogs" / "upd" / "catalog.json").read_text()
    p = subprocess.run([*cli, "add", "--dataset", "upd", "--items", str(files / "new-items.jsonl")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{files / 'new-items.jsonl'}:1: duplicate item id {items[0].id!r} (already in the catalog)" in p.stderr
    assert (home / "catalogs" / "upd" / "catalog.json").read_text() == registration


_STAGE = """
import json, sys
from mediarec.catalog import load_dataset
from mediarec.app import from_catalog
cat = load_dataset("upd")
rec = from_catalog(cat, llm="none", train_second_stage=sys.argv[1] == "train")
r = rec.recommend(user=cat.users()[0], k=5, explain=False)
print(json.dumps({"interactions": len(cat.interactions), "status": rec.stage.status, "stages": r.stages,
                  "meta": {k: rec.stage.ranker.meta.get(k) for k in ("retrain_pending", "carried_over_from")}}))
"""


def test_new_interactions_retrain_the_learned_stage_in_the_background(parts, tmp_path, model_home, monkeypatch):
    """`mediarec add --interactions` returns once the index is built; the previous learned model serves
    (also when the background retrain is killed) until the retrain replaces it with the model a full
    rebuild trains."""
    from mediarec.infra.jobs import INTERRUPTED, RUNNING
    from mediarec.rank.learned import LearnedRanker

    base, _, interactions = parts
    home = make_home(tmp_path / "home", model_home)
    files = tmp_path / "files"
    write_generic(base, files / "items.jsonl", files / "interactions.csv")
    write_generic(base.replace(interactions=interactions), files / "unused.jsonl", files / "new.csv")
    env = cli_env(home)
    cli = cli_command()
    # --no-tune: the update is the subject (test_collab.py tests the choice and its carrying over)
    p = subprocess.run([*cli, "index", "--catalog", str(files), "--name", "upd", "--quiet", "--no-tune"], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr

    def stage(mode: str) -> dict:
        q = subprocess.run([sys.executable, "-c", _STAGE, mode], env=env, capture_output=True, text=True, timeout=600)
        assert q.returncode == 0, q.stderr
        return json.loads(q.stdout)

    p = subprocess.run([*cli, "add", "--dataset", "upd", "--interactions", str(files / "new.csv"), "--quiet"],
                       env={**env, "MEDIAREC_TEST_PAUSE_JOB": "1"}, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert RUNNING in p.stdout and "retrain pid" in p.stdout
    pid = int(p.stdout.split("retrain pid ")[1].split(")")[0])
    _stopped(pid)  # before it retrained (it stopped itself at its start: MEDIAREC_TEST_PAUSE_JOB)
    os.kill(pid, signal.SIGKILL)  # interrupted: the carried-over model keeps serving
    time.sleep(0.5)
    killed = stage("serve")
    assert killed["interactions"] == len(base.interactions) + len(interactions)
    assert killed["meta"]["retrain_pending"] and killed["meta"]["carried_over_from"]
    assert INTERRUPTED in killed["status"] and "learned" in killed["stages"]

    restarted = stage("train")  # a process that may train starts the retrain again, serving meanwhile
    assert RUNNING in restarted["status"] and "learned" in restarted["stages"]
    _wait_for_job(home)
    done = stage("serve")
    assert not done["meta"]["retrain_pending"] and RUNNING not in done["status"] and INTERRUPTED not in done["status"]

    monkeypatch.setenv("MEDIAREC_HOME", str(home))
    grown = load_dataset("upd")
    full = _rec(grown, make_home(tmp_path / "full", model_home))
    served = from_catalog(grown, llm="none", settings=Settings(home=home), train_second_stage=False)
    retrained = LearnedRanker.from_json(served.stage.path.read_text())
    assert full.stage.path.name == served.stage.path.name
    for k in ("examples", "examples_in_pool", "holdout_examples"):
        assert retrained.meta[k] == full.stage.ranker.meta[k], k
    # The same training data, but not the same model: training in two processes differs (Python's
    # per-process string hashing orders sets, e.g. of genre labels, and float sums with them), so the
    # rankings agree within the documented tolerance (docs/formats.md), as for a carried-over model.
    overlap = np.mean([len({r.item.id for r in served.recommend(user=u, k=10, explain=False).items}
                           & {r.item.id for r in full.recommend(user=u, k=10, explain=False).items}) / 10
                       for u in grown.users()[:20]])
    assert overlap >= 0.8


def _wait_for_job(home: Path, name: str = "upd", timeout: float = 600) -> None:
    """Until the catalogue's background job (refit, then retrain) has exited."""
    from mediarec.infra.jobs import is_running

    deadline = time.time() + timeout
    while is_running(name, home):
        assert time.time() < deadline, "the background job did not finish"
        time.sleep(0.5)


def _stopped(pid: int, timeout: float = 120) -> None:
    """Until process ``pid`` has stopped itself (state T in /proc)."""
    deadline = time.time() + timeout
    stat = Path(f"/proc/{pid}/stat")
    while True:
        assert stat.exists(), f"the background job {pid} ended instead of stopping at its start"
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        assert time.time() < deadline, f"the background job {pid} did not stop at its start"
        time.sleep(0.05)


_SERVE = """
import json, sys
from mediarec.catalog import load_dataset
from mediarec.app import from_catalog
cat = load_dataset("upd")
rec = from_catalog(cat, llm="none", train_second_stage=sys.argv[1] == "train")
user = sys.argv[2]
top = [r.item.id for r in rec.recommend(user=user, k=10, explain=False).items]
print(json.dumps({"interactions": len(cat.interactions), "pending": rec.index.collab_pending,
                  "fingerprint": rec.index.collab_fingerprint(), "history": [x.item for x in rec.history_of(user)],
                  "collections": sorted(c.name for c in rec.index.client.list_collections()), "top": top,
                  "status": rec.stage.status}))
"""


def _registered(parts, tmp_path, model_home):
    """A registered catalog ``upd`` (the base rows), the new items in a file and the new interactions in two."""
    base, items, interactions = parts
    home = make_home(tmp_path / "home", model_home)
    files = tmp_path / "files"
    write_generic(base, files / "items.jsonl", files / "interactions.csv")
    write_generic(base.replace(items=items, interactions=[]), files / "new-items.jsonl")
    half = len(interactions) // 2
    for name, rows in (("first", interactions[:half]), ("second", interactions[half:])):
        write_generic(base.replace(interactions=rows), files / "unused.jsonl", files / f"{name}.csv")
    env = cli_env(home)
    p = subprocess.run([*cli_command(), "index", "--catalog", str(files), "--name", "upd",
                        "--quiet", "--no-tune"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return home, files, env


def _add(env, path: Path, what: str = "--interactions") -> tuple[str, int]:
    """``mediarec add --interactions``; its output and the background job's pid, which stops
    itself before it starts (MEDIAREC_TEST_PAUSE_JOB, tests/_shared_cache/sitecustomize.py: the
    refit is held pending while the test looks)."""
    from mediarec.infra.jobs import COLLAB_RUNNING

    p = subprocess.run([*cli_command(), "add", "--dataset", "upd", what, str(path),
                        "--quiet"], env={**env, "MEDIAREC_TEST_PAUSE_JOB": "1"}, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert f"collaborative side: {COLLAB_RUNNING} (pid " in p.stdout
    pid = int(p.stdout.split(f"{COLLAB_RUNNING} (pid ")[1].split(")")[0])
    _stopped(pid)
    return p.stdout, pid


def _serve(env, user: str, mode: str = "serve") -> dict:
    q = subprocess.run([sys.executable, "-c", _SERVE, mode, user], env=env, capture_output=True, text=True, timeout=600)
    assert q.returncode == 0, q.stderr
    return json.loads(q.stdout)


def _pending(home: Path) -> dict | None:
    return json.loads((home / "catalogs" / "upd" / "catalog.json").read_text()).get("collab_pending")


def _assert_equals_full_rebuild(home: Path, full_home: Path, model_home: Path, monkeypatch) -> None:
    """The served index equals a full rebuild of the registered rows in a fresh home; only its fit is left."""
    monkeypatch.setenv("MEDIAREC_HOME", str(home))
    grown = load_dataset("upd")
    served = from_catalog(grown, llm="none", settings=Settings(home=home), train_second_stage=False)
    full = from_catalog(grown, llm="none", settings=Settings(home=make_home(full_home, model_home)),
                                    second_stage=None)
    assert not served.index.collab_pending and _pending(home) is None
    assert served.index.collab_fingerprint() == full.index.collab_fingerprint()
    assert served.index.collab.item_ids == full.index.collab.item_ids
    assert np.abs(served.index.collab.matrix - full.index.collab.matrix).max() == 0
    cb = sorted(c.name for c in served.index.client.list_collections() if c.name.startswith("upd-c"))
    assert cb == sorted(served.index._collab_names())  # the previous fits are pruned
    assert sorted(p.name for p in served.index.matrix_path.parent.glob("upd-collab*.npz")) == [served.index.matrix_path.name]


def test_add_interactions_refits_the_collaborative_side_in_the_background(few, tmp_path, model_home, monkeypatch):
    """`mediarec add --interactions` returns with the previous fit serving the new histories, and a
    fresh process does not refit meanwhile; a second add while the refit runs is picked up; at the
    end the index equals a full rebuild of all rows."""
    home, files, env = _registered(few, tmp_path, model_home)
    first = [x for x in few[2][:len(few[2]) // 2]]
    known = set(few[0].by_user)
    user = max({x.user for x in first} & known, key=lambda u: (sum(x.user == u for x in first), u))
    before = _serve(env, user)
    assert not before["pending"]

    out, pid = _add(env, files / "first.csv")
    assert "collaborative side pending" in out
    mark = _pending(home)
    assert mark["serving"] == before["fingerprint"] and mark["target"] != before["fingerprint"]
    try:
        during = _serve(env, user, "train")  # may train: it must neither refit nor start a second job
        assert during["pending"] and during["fingerprint"] == before["fingerprint"]
        assert during["collections"] == before["collections"]  # no new fit was written
        assert during["interactions"] == len(few[0].interactions) + len(first)
        mine = {x.item for x in first if x.user == user}
        assert mine and mine <= set(during["history"]) and not mine & set(during["top"])  # the new history counts
        assert during["top"] != before["top"]

        out2, pid2 = _add(env, files / "second.csv")  # while the first refit is still pending
        assert pid2 == pid and _pending(home)["serving"] == before["fingerprint"]
        out3, pid3 = _add(env, files / "new-items.jsonl", "--items")  # items alone: the refit stays pending
        assert pid3 == pid and "collaborative side pending" in out3 and f"{NEW} items embedded" in out3
        assert _pending(home)["serving"] == before["fingerprint"]
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait_for_job(home)
    _assert_equals_full_rebuild(home, tmp_path / "full", model_home, monkeypatch)
    done = _serve(env, user)
    grown = load_dataset("upd")
    assert not done["pending"] and len(grown.interactions) == len(few[0].interactions) + len(few[2])
    assert len(grown.items) == N


def test_killed_refit_restarts_and_forget_while_pending(few, tmp_path, model_home, monkeypatch):
    """kill -9 of the background refit leaves the previous fit serving, and the next process that
    may train starts it again; `forget --dataset upd --user` while a refit is pending leaves no fit with the person."""
    home, files, env = _registered(few, tmp_path, model_home)
    first = few[2][:len(few[2]) // 2]
    user = next(x.user for x in first if x.user in few[0].by_user)
    before = _serve(env, user)
    _, pid = _add(env, files / "first.csv")
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    killed = _serve(env, user)  # may not train: serves the previous fit, starts nothing
    assert killed["pending"] and killed["fingerprint"] == before["fingerprint"]
    assert "did not finish" in killed["status"]
    restarted = _serve(env, user, "train")
    assert restarted["pending"] and "in the background" in restarted["status"]
    _wait_for_job(home)
    _assert_equals_full_rebuild(home, tmp_path / "full", model_home, monkeypatch)

    # the rest of the new rows in three files: for `index`, `add --wait` and `forget` while pending
    rest = few[2][len(few[2]) // 2:]
    for k, name in enumerate(("for-index", "for-wait", "for-forget")):
        write_generic(few[0].replace(interactions=rest[k::3]), files / "unused.jsonl", files / f"{name}.csv")
    cli = cli_command()

    _, pid = _add(env, files / "for-index.csv")
    target = _pending(home)["target"]
    try:  # a full build fits in the foreground and settles the pending refit
        p = subprocess.run([*cli, "index", "--dataset", "upd", "--no-learned", "--quiet", "--no-tune"], env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        assert _pending(home) is None
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait_for_job(home)
    assert _serve(env, user)["fingerprint"] == target

    p = subprocess.run([*cli, "add", "--dataset", "upd", "--interactions", str(files / "for-wait.csv"), "--wait",
                        "--quiet"], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "fitted again" in p.stdout and "in the background" not in p.stdout and _pending(home) is None

    gone = next(x.user for x in rest[2::3] if x.user != user)
    _, pid = _add(env, files / "for-forget.csv")
    serving = _pending(home)["serving"]
    try:
        p = subprocess.run([*cli_command(), "forget", "--dataset", "upd", "--user", gone], env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        assert "refit was pending" in p.stdout and _pending(home) is None
    finally:
        os.kill(pid, signal.SIGCONT)
    _wait_for_job(home)
    after = _serve(env, user)
    assert not after["pending"] and after["fingerprint"] != serving
    monkeypatch.setenv("MEDIAREC_HOME", str(home))
    grown = load_dataset("upd")
    assert gone not in grown.by_user
    _assert_equals_full_rebuild(home, tmp_path / "full-after-forget", model_home, monkeypatch)
