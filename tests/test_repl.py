"""``mediarec chat`` driven through a real pseudo-terminal (pexpect), with the real SmolLM2-135M.

Timeouts are generous: the test machine is slow and shared, and the first answer loads the model.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")

from mediarec.config import get_settings  # noqa: E402
from mediarec.llm.weights import resolve  # noqa: E402
from conftest import copy_home

PROMPT = "mediarec> "
SLOW = 600  # seconds for one answer on a loaded machine
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][AB0-2]|\r")
MEDIAREC = Path(sys.executable).with_name("mediarec")


@pytest.fixture(scope="module")
def env(tmp_path_factory, demo_home_template):
    h = copy_home(demo_home_template, tmp_path_factory.mktemp("repl-home") / "home")  # demo already indexed
    e = dict(os.environ)
    e.update(MEDIAREC_HOME=str(h), TERM="xterm", COLUMNS="200", LINES="50", OPENAI_API_KEY="sk-fake-test-key",
             ANONYMIZED_TELEMETRY="False",
             MEDIAREC_LLM_THREADS="1")  # one llama.cpp thread: the cores are shared, spinning threads crawl
    e.pop("NO_COLOR", None)
    return e


@pytest.fixture(scope="module")
def smol(env) -> str:
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", env["MEDIAREC_HOME"])
    try:
        return str(resolve("smollm2-135m", get_settings())["model"])
    finally:
        mp.undo()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _spawn(env, smol, cwd, sigint_ignored: bool = False):
    """``sigint_ignored``: start the chat the way a shell starts a background job (SIGINT ignored,
    which Python keeps); Ctrl-C must still work in the REPL."""
    cmd = str(MEDIAREC) if MEDIAREC.exists() else sys.executable
    args = ([] if MEDIAREC.exists() else ["-m", "mediarec.cli"]) + ["chat", "--dataset", "demo",
                                                                  "--llm", f"local:{smol}"]
    child = pexpect.spawn(cmd, args, env=env, cwd=str(cwd), encoding="utf-8", codec_errors="replace",
                          dimensions=(50, 200), timeout=SLOW,
                          preexec_fn=_ignore_sigint if sigint_ignored else None)
    child.logfile_read = open(Path(cwd) / "pty.log", "w", encoding="utf-8")  # what the terminal showed
    child.expect_exact(PROMPT)
    return child


def _clean(text: str) -> str:
    return ANSI.sub("", text)


def _answer(child) -> str:
    """Everything printed up to the next prompt, without terminal control codes."""
    child.expect_exact(PROMPT)
    out = _clean(child.before)
    assert "Traceback" not in out, out
    return out


def _titles(out: str) -> list[str]:
    """The title column of the final recommendation table, in rank order (the provisional lists
    drawn while the LLM works come before the reply's first line)."""
    out = out.rsplit("Here is what I found", 1)[-1]
    rows = re.findall(r"^\s*│\s*(\d+)\s*│\s*(.*?)\s*│\s*(\d{4})?\s*│\s*(-?\d+\.\d{3})\s*│", out, flags=re.M)
    assert rows, out
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    return [r[1] for r in rows]


@pytest.mark.llm
def test_chat_session_in_a_terminal(env, smol, tmp_path):
    child = _spawn(env, smol, tmp_path)
    try:
        child.sendline("something like Alien but funnier")
        out = _answer(child)
        assert "Here is what I found" in out
        first = _titles(out)
        assert len(first) == 10

        child.sendline("not 1")
        out = _answer(child)
        assert "won't suggest" in out
        after = _titles(out)
        assert first[0] not in after and len(after) == 10

        child.sendline(":why 1")
        out = _answer(child)
        assert f"1. {after[0]}" in out and "hint:" not in out

        for bad, expected in ((":why 99", "no item 99"), (":why", "usage"), ("", "hint:"),
                              (":frobnicate", "unknown command"),
                              ("I watched Zzyzx Qwerty Nonexistent", "No title"),
                              ("more like 42", "No item 42")):
            child.sendline(bad)
            out = _answer(child)
            assert "hint:" in out and expected in out, (bad, out)
            assert len([ln for ln in out.splitlines() if ln.strip() and bad not in ln]) <= 2, out

        child.sendline("I watched Dune")
        out = _answer(child)
        assert "Dune (1984)" in out and "Dune (2021)" in out and "which one" in out
        child.sendline("1")
        assert "Added Dune (1984)" in _answer(child)

        session_file = tmp_path / "saved" / "s.json"
        child.sendline(f":save {session_file}")
        assert "saved to" in _answer(child)
        assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
        text = session_file.read_text()
        assert "sk-fake-test-key" not in text
        data = json.loads(text)
        assert "m-dune-1984" in [x["item"] for x in data["interactions"]] and data["excluded"]

        child.sendline(":reset")
        _answer(child)
        child.sendline(f":load {session_file}")
        out = _answer(child)
        assert "loaded" in out and "1 excluded" in out
        child.sendline(":history")
        assert "Dune (1984)" in _answer(child)
        child.sendline(":load /no/such/file.json")
        assert "hint:" in _answer(child)

        child.sendline(":help")
        assert ":why N" in _answer(child)
        child.sendline("quit")  # as a newcomer types it: no colon (was read as a request)
        child.expect(pexpect.EOF)
        out = _clean(child.before)
        assert "Traceback" not in out
    finally:
        child.close()
    assert child.exitstatus == 0, child.signalstatus
    hist = Path(env["MEDIAREC_HOME"]) / "chat" / "demo.history"  # one line history per catalog
    assert hist.is_file() and stat.S_IMODE(hist.stat().st_mode) == 0o600


@pytest.mark.llm
def test_the_retrieval_list_shows_before_the_llms(env, smol, tmp_path):
    """A chat turn draws the retrieval list while the LLM ranks, then the LLM's order (in place,
    under a spinner), then the final table; the final order is the LLM's."""
    child = _spawn(env, smol, tmp_path)
    try:
        child.sendline("something funny from the 90s")
        child.expect_exact("retrieval (the LLM is ranking…)")  # drawn before the LLM's order exists
        early = _clean(child.before)
        assert "llm-score" not in early
        out = _answer(child)
        assert "llm-score (reasons…)" in out  # the LLM's order, before its reasons
        # the list is redrawn while the spinner turns: its last drawing before the reply
        llm_list = out[: out.index("Here is what I found")].rsplit("llm-score (reasons…)", 1)[-1]
        final = _titles(out)
        assert final and _titles("Here is what I found\n" + llm_list)[: len(final)] == final
        child.sendline(":quit")
        child.expect(pexpect.EOF)
    finally:
        child.close()


@pytest.mark.llm
def test_ctrl_c_cancels_and_ctrl_d_exits(env, smol, tmp_path):
    child = _spawn(env, smol, tmp_path, sigint_ignored=True)
    try:
        # A fresh process: the model is loaded on the first answer, so this one takes a while.
        child.sendline("a quiet film about the sea and old friends")
        child.expect("thinking")
        child.sendintr()
        out = _answer(child)
        assert "cancelled" in out
        time.sleep(0.3)
        child.sendintr()  # at the prompt: a hint, still in the REPL
        out = _answer(child)
        assert "Ctrl-D" in out
        child.sendline(":why 1")  # the cancelled answer left no list behind
        out = _answer(child)
        assert "hint:" in out
        child.sendeof()
        child.expect(pexpect.EOF)
        assert "Traceback" not in _clean(child.before)
    finally:
        child.close()
    assert child.exitstatus == 0, child.signalstatus


# -- how a list looks: long reasons wrap, whole ------------------------------------------------
LONG_REASON = ("Because you liked Alien and Blade Runner: another slow-burning, claustrophobic science-fiction story "
               "about a crew far from home, hunted one by one by something they brought aboard themselves; its "
               "ending is the last line of this reason.")


def _long_result():
    from types import SimpleNamespace as NS

    rows = [NS(rank=1, item=NS(title="The Thing", year=1982), score=0.912, reason=LONG_REASON),
            NS(rank=2, item=NS(title="Moon", year=2009), score=0.5, reason="short")]
    return NS(stages=["retrieval", "llm"], pending=None, items=rows)


def _why_column(rendered: str) -> str:
    """The text of the table's last column, its cells' lines joined."""
    cells = [line.split("│")[-2] for line in rendered.splitlines() if line.count("│") >= 6]
    return " ".join(" ".join(cells).split())


@pytest.mark.parametrize("width", [200, 80, 40])
def test_a_long_reason_wraps_in_full(width):
    from rich.console import Console

    from mediarec.chat.render import result_table
    from mediarec.chat.repl import REASON_CHARS

    assert len(LONG_REASON) > REASON_CHARS  # longer than the widest the column gets
    console = Console(width=width, record=True, color_system=None, file=open(os.devnull, "w"))
    console.print(result_table(_long_result(), REASON_CHARS))
    out = console.export_text()
    assert "…" not in out, out
    why = _why_column(out)
    if width >= 80:  # wide enough for whole words: the reason reads as it was written
        assert LONG_REASON in why, out
    else:  # narrow: a word may be folded over two lines, but nothing is lost
        assert "".join(LONG_REASON.split()) in "".join(why.split()), out
    assert max(len(line) for line in out.splitlines()) <= width
