"""The audit of the commands that write (issue 28 item 4; docs/reliability.md is the table, one test
a row): what each prints is what it wrote (read back from disk), and what a ``kill -9`` at a chosen
point leaves. Everything is real: the ``mediarec`` CLI (in this process where the process boundary
is not the subject, in a subprocess that is SIGKILLed where it is), real Chroma, real files.

A kill "at a chosen point" runs the command in a subprocess whose one step is replaced by a stall
that writes a marker and sleeps: the test waits for the marker, then sends SIGKILL, so the point
is the same on a loaded machine (no sleeps timed against a run).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from conftest import cli_command, cli_env, copy_home, kill_at, run_cli
from test_forget import SAME_ID, _hashes, _of, _own_files, _rows, three_catalogs  # noqa: F401 - a fixture

# -- index ----------------------------------------------------------------------------------------
def test_index_prints_what_it_wrote(demo_home_template, tmp_path):
    """`indexed NAME: N items, M with collaborative vectors` and `catalog NAME: I items, J
    interactions` are the Chroma collection's count, the item-item matrix's items and the rows a
    fresh load reads back. (kill -9 mid-build: test_faults.py::test_index_killed_mid_build_then_completed.)"""
    from mediarec.config import get_settings
    from mediarec.index.store import make_client

    home = copy_home(demo_home_template, tmp_path / "home")
    folder = _own_files(tmp_path / "mine", "a", 0)
    p = run_cli("index", "--catalog", str(folder), "--name", "mine", home=home)
    assert p.returncode == 0, p.stderr
    n_items, n_rows = map(int, re.search(r"catalog mine: (\d+) items, (\d+) interactions", p.stderr).groups())
    n_indexed, n_collab = map(int, re.search(r"indexed mine: (\d+) items, (\d+) with collaborative", p.stdout).groups())
    assert (n_items, n_rows) == (60, len(_rows("mine", home))) == (60, 120)
    client = make_client(get_settings(home=home), "mine")  # as the command opened it
    assert client.get_collection("mine-text").count() == n_indexed == n_items
    (matrix,) = (home / "index" / "mine").glob("mine-collab-*.npz")
    with np.load(matrix) as z:
        assert len(z["item_ids"]) == n_collab == len({x.item for x in _rows("mine", home)})


# -- forget ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["mediarec.app.forget._forget_events", "mediarec.app.forget._delete_models",
                                   "mediarec.app.forget._forget_sessions", "mediarec.app.forget.mark_clean"])
def test_forget_killed_at_any_point_is_finished_by_running_it_again(three_catalogs, tmp_path, point):  # noqa: F811
    """From its first write on, the person is left out of every load of the catalog; other catalogs
    are never touched; `add --readmit` waits for the forget to finish; the same command finishes it."""
    home = copy_home(three_catalogs, tmp_path / "home")
    feedback = home / "catalogs" / "mine" / "feedback.jsonl"
    feedback.write_text(json.dumps({"user": SAME_ID, "item": "a005", "timestamp": 1_650_000_000, "event": "like"})
                        + "\n" + json.dumps({"user": "u01", "item": "a006", "timestamp": 1_650_000_001,
                                             "event": "like"}) + "\n")
    before = _hashes(home)
    others = {p: h for p, h in before.items() if _of("demo", p) or _of("other", p)}

    kill_at(home, tmp_path, point, "forget", "--dataset", "mine", "--user", SAME_ID)
    after = _hashes(home)
    assert {p: after.get(p) for p in others} == others
    assert SAME_ID not in {x.user for x in _rows("mine", home)}  # left out from the first write on
    assert json.loads((home / "forgotten.json").read_text())["scopes"]["mine"]  # an entry, not yet clean
    more = tmp_path / "more.csv"
    more.write_text(f"user,item,timestamp,event\n{SAME_ID},a001,1650000100,play\n")
    p = run_cli("add", "--dataset", "mine", "--interactions", str(more), "--readmit", home=home)
    assert p.returncode == 2 and "did not finish" in p.stderr

    p = run_cli("forget", "--dataset", "mine", "--user", SAME_ID, home=home)
    assert p.returncode == 0, p.stderr
    assert "(forgotten there before; checked again)" in p.stdout
    assert f"left: no file of mine under {home} holds {SAME_ID!r} any more" in p.stdout
    assert SAME_ID not in feedback.read_text() and "u01" in feedback.read_text()
    assert not list((home / "learned").glob("mine-*.json"))
    final = _hashes(home)
    assert {p: final.get(p) for p in others} == others
    entry = next(iter(json.loads((home / "forgotten.json").read_text())["scopes"]["mine"].values()))
    assert entry == {"clean": True, "readmitted": False}


# -- chat --save-feedback -------------------------------------------------------------------------
_APPEND = textwrap.dedent("""
    import sys
    from mediarec.catalog.feedback import feedback_log
    from mediarec.catalog.model import Interaction

    log = feedback_log("mine")
    for n in range(100000):
        log.append(Interaction(user="u01", item="a%03d" % (n % 60), timestamp=1650000000 + n, event="like"))
        print(n + 1, flush=True)  # acknowledged: on disk
""")


def test_feedback_log_killed_while_appending_keeps_every_acknowledged_event(three_catalogs, tmp_path):  # noqa: F811
    """Each event is one write on an O_APPEND descriptor, fsynced before it is acknowledged: a kill
    leaves whole lines, every acknowledged event among them, and the catalog loads."""
    home = copy_home(three_catalogs, tmp_path / "home")
    p = subprocess.Popen([sys.executable, "-c", _APPEND], env=cli_env(home), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    acked = 0
    try:
        for line in p.stdout:
            acked = int(line)
            if acked >= 50:
                break
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL, p.stderr.read()
    data = (home / "catalogs" / "mine" / "feedback.jsonl").read_bytes()
    assert data.endswith(b"\n")
    lines = data.splitlines()
    assert len(lines) >= acked >= 50 and all(json.loads(ln)["user"] == "u01" for ln in lines)
    assert len(_rows("mine", home)) == 120 + len(lines)


def test_save_feedback_refuses_a_forgotten_person(three_catalogs, tmp_path):  # noqa: F811
    """Their events would be saved where every load leaves them out: refused, exit 2, before anything."""
    home = copy_home(three_catalogs, tmp_path / "home")
    assert run_cli("forget", "--dataset", "mine", "--user", SAME_ID, home=home).returncode == 0
    p = run_cli("chat", "--dataset", "mine", "--user", SAME_ID, "--save-feedback", "--llm", "none", home=home,
                stdin=":quit\n")
    assert p.returncode == 2 and "was forgotten in mine" in p.stderr and "--readmit" in p.stderr
    assert not (home / "catalogs" / "mine" / "feedback.jsonl").exists()


# -- tune -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["mediarec.eval.tuning.atomic_write_text", "os.replace"])
def test_tune_killed_leaves_the_previous_choice_whole(demo_home_template, tmp_path, point):
    """The choice is written atomically once the grid is done: a kill before the write, or between
    writing the temporary file and renaming it (os.replace), leaves the previous file as it was."""
    home = copy_home(demo_home_template, tmp_path / "home")
    tuned = home / "tuned" / "demo.json"
    p = run_cli("tune", "--dataset", "demo", "--quiet", home=home)
    assert p.returncode == 0, p.stderr
    first = tuned.read_bytes()
    os.utime(tuned, ns=(1, 1))
    kill_at(home, tmp_path, point, "tune", "--dataset", "demo", "--val-users", "10", "--quiet")
    assert tuned.read_bytes() == first and tuned.stat().st_mtime_ns == 1
    assert json.loads(first)["settings"]
    assert not [q for q in tuned.parent.iterdir() if q.name != "demo.json" and not q.name.startswith(".")]
    if point == "os.replace":  # killed with the new choice written whole beside it, under a hidden name
        (tmp,) = [q for q in tuned.parent.iterdir() if q.name.startswith(".demo.json.")]
        assert json.loads(tmp.read_text())["settings"]
    p = run_cli("tune", "--dataset", "demo", "--val-users", "10", "--quiet", home=home)  # the same command again
    assert p.returncode == 0 and json.loads(tuned.read_text())["validation_users"] == 10, p.stderr


# -- enrich ---------------------------------------------------------------------------------------
class _Summaries(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions that answers a numbered one-sentence summary."""

    n = 0
    lock = threading.Lock()

    def do_POST(self):  # the http.server API
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.lock:
            type(self).n += 1
            n = type(self).n
        body = json.dumps({"id": f"c{n}", "object": "chat.completion", "created": 0, "model": "fake",
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": f"Summary number {n}."}}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 4, "total_tokens": 5}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.server
def test_enrich_killed_mid_run_keeps_whole_summaries_and_resumes(tmp_path, model_home):
    """Summaries are appended one line each: a kill after three keeps exactly three whole lines;
    the same command writes the rest, and `N new summaries` is the lines it added."""
    from conftest import make_home

    home = make_home(tmp_path / "home", model_home)
    folder = tmp_path / "thin"
    folder.mkdir()
    (folder / "items.jsonl").write_text("".join(json.dumps({"id": f"t{i}", "title": f"Thin {i}"}) + "\n"
                                                for i in range(8)))
    assert run_cli("index", "--catalog", str(folder), "--name", "thin", "--no-learned", "--quiet",
                   home=home).returncode == 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Summaries)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{server.server_port}/v1", "OPENAI_API_KEY": "test"}
    try:
        kill_at(home, tmp_path, "mediarec.rank.enrich.clean_summary", "enrich", "--dataset", "thin",
                "--llm", "openai:fake", "--quiet", after=3, env=env)
        path = home / "enrich" / "thin.jsonl"
        lines = path.read_text().splitlines()
        assert len(lines) == 3 and all(json.loads(ln)["summary"] for ln in lines)
        p = run_cli("enrich", "--dataset", "thin", "--llm", "openai:fake", "--quiet", home=home, env=env)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("5 new summaries (0 failed, 3 already there, 8 thin items)")
        assert len(path.read_text().splitlines()) == 8
    finally:
        server.shutdown()


# -- train ----------------------------------------------------------------------------------------
@pytest.mark.llm
@pytest.mark.slow
def test_train_killed_mid_run_resumes_with_whole_files(demo_home_template, tmp_path):
    """Killed after its first checkpoint, mid-chunk: every file of the run is whole (run.json,
    the log's lines, the checkpoint torch loads), no adapter is there, and the same command resumes
    from the checkpoint and writes the adapter and its manifest."""
    pytest.importorskip("peft")
    import torch

    home = copy_home(demo_home_template, tmp_path / "home")
    out = tmp_path / "run"
    args = ["train", "--dataset", "demo", "--llm", "local:smollm2-135m", "--output", str(out), "--examples", "6",
            "--epochs", "1", "--batch", "2", "--chunk", "4", "--val-users", "2", "--quiet"]
    # killed as it logs step 3: steps 1-2 (4 examples) are checkpointed, step 3 is trained but not
    kill_at(home, tmp_path, "mediarec.train.lora.Trainer._append_log", *args,
             when="args[1].get('step') == 3")
    json.loads((out / "run.json").read_text())
    rows = [json.loads(ln) for ln in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["event"] == "step"] == [1, 2]
    state = torch.load(out / "checkpoint.pt", weights_only=False)["state"]
    assert state["done"] == 4
    assert not (out / "adapter.gguf").exists() and not list(out.glob("*.tmp"))

    p = subprocess.run(cli_command(*args), env=cli_env(home), capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming after 4 examples" in p.stderr
    assert (out / "adapter.gguf").stat().st_size > 0 and json.loads((out / "manifest.json").read_text())
