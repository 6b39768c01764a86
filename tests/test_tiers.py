"""The tier checks in conftest.py see what they are meant to: a server process started through
``subprocess`` is recognised by its command line (so an unmarked test that starts one fails), and
ordinary child processes are not taken for servers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import conftest
from conftest import _server_command


@pytest.mark.parametrize(("argv", "what"), [
    (["/venv/bin/chroma", "run", "--path", "/tmp/db", "--port", "8000"], "chroma run"),
    ([Path("/venv/bin/chroma"), "run"], "chroma run"),
    ([sys.executable, "-m", "llama_cpp.server", "--model", "m.gguf"], "llama_cpp.server"),
    (["/venv/bin/mediarec", "serve", "--port", "0"], "mediarec serve"),
    ([sys.executable, "-m", "mediarec.cli", "serve"], "mediarec serve"),
    (["/venv/bin/mediarec", "index", "--dataset", "demo"], None),
    ([sys.executable, "-m", "mediarec.cli", "recommend", "--query", "serve"], None),
    (["/venv/bin/chroma", "utils"], None),
    (["grep", "-rl", "run", "/tmp"], None),
    ("chroma run", None),  # a shell string is not parsed (no test starts a server that way)
])
def test_server_commands_are_recognised(argv, what):
    assert _server_command(argv) == what


def test_a_real_child_process_is_recorded_only_if_it_is_a_server():
    before = len(conftest._SERVERS_STARTED)
    p = subprocess.run([sys.executable, "-c", "print('not a server')"], capture_output=True, text=True)
    assert p.stdout == "not a server\n"
    assert len(conftest._SERVERS_STARTED) == before
