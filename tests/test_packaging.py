"""The wheel carries everything mediarec reads at run time (templates, protocols, the demo catalog),
and the code finds them as package resources, not through the checkout's folders."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (whl,) = out.glob("mediarec-*.whl")
    return zipfile.ZipFile(whl)


def test_the_wheel_holds_templates_protocols_and_the_demo(wheel):
    names = set(wheel.namelist())
    src = REPO / "src" / "mediarec"
    for folder, pattern in (("prompts", "*.j2"), ("eval/protocols", "*.json"), ("catalog/demo", "*.jsonl")):
        shipped = sorted(p.name for p in (src / folder).glob(pattern))
        assert shipped, folder
        for name in shipped:
            assert f"mediarec/{folder}/{name}" in names, f"{folder}/{name} is not in the wheel"
    assert not any(n.startswith(("tests/", "eval/results", "benchmarks/")) for n in names)


def test_resources_are_found_without_the_checkout(tmp_path):
    """From another folder, with only the installed package's resources: protocols by name, the
    templates and the demo catalog."""
    code = ("from mediarec.eval import EvalProtocol; from mediarec.rank.prompts import PromptLibrary;"
            "from mediarec.catalog import load_demo;"
            "p = EvalProtocol.load('ml-100k-full'); lib = PromptLibrary();"
            "print(p.name, 'score' in lib.names(), len(load_demo()) > 0)")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["ml-100k-full", "True", "True"]
