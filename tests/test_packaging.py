"""The wheel carries everything mediarec reads at run time (templates, protocols, the demo catalog),
and the code finds them as package resources, not through the checkout's folders.

The wheel is built from the checkout (``pip wheel``), installed without dependencies into a fresh
virtual environment, and run from another folder: the installed copy, not the editable one the test
run uses, is what answers (``mediarec.__file__`` says so). The dependencies come from the test
environment's site-packages as a plain path (its ``.pth`` files, the editable hook among them, are
not run)."""

from __future__ import annotations

import os
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # a wheel build and a virtual environment


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    (whl,) = out.glob("mediarec-*.whl")
    return whl


@pytest.fixture(scope="module")
def wheel(wheel_path) -> zipfile.ZipFile:
    return zipfile.ZipFile(wheel_path)


@pytest.fixture(scope="module")
def installed(wheel_path, tmp_path_factory) -> Path:
    """The python of a fresh virtual environment holding the wheel (and nothing from the checkout)."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=False).create(env)
    py = env / "bin" / "python"
    p = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--quiet",
                        str(wheel_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies, as a plain path after the environment's own site-packages.
    (Path(purelib) / "test-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return py


def test_the_wheel_holds_templates_protocols_and_the_demo(wheel):
    names = set(wheel.namelist())
    src = REPO / "src" / "mediarec"
    for folder, pattern in (("prompts", "*.j2"), ("eval/protocols", "*.json"), ("catalog/demo", "*.jsonl")):
        shipped = sorted(p.name for p in (src / folder).glob(pattern))
        assert shipped, folder
        for name in shipped:
            assert f"mediarec/{folder}/{name}" in names, f"{folder}/{name} is not in the wheel"
    assert not any(n.startswith(("tests/", "eval/results", "benchmarks/")) for n in names)


def test_resources_are_found_without_the_checkout(installed, tmp_path):
    """From another folder, with only the installed package's resources: protocols by name, the
    templates and the demo catalog."""
    code = ("import mediarec; from mediarec.eval import EvalProtocol; from mediarec.rank.prompts import PromptLibrary;"
            "from mediarec.catalog import load_demo;"
            "p = EvalProtocol.load('ml-100k-full'); lib = PromptLibrary();"
            "print(mediarec.__file__); print(p.name, 'score' in lib.names(), len(load_demo()) > 0)")
    # nothing of the checkout: not the test run's shared cache either (tests/_shared_cache on PYTHONPATH)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TESTS_SHARED_CACHE_DIR")}
    r = subprocess.run([str(installed), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    where, answer = r.stdout.splitlines()
    assert Path(where).is_relative_to(installed.parent.parent), where  # the wheel's copy answered
    assert not Path(where).is_relative_to(REPO), where
    assert answer.split() == ["ml-100k-full", "True", "True"]
