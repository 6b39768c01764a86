"""Shared fixtures: the real datasets beside the checkout and an isolated MEDIAREC_HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDIAREC_TEST_DATA", REPO.parent / "shared" / "data"))
# Models are pulled once per machine into a cache shared by all test runs (not the user's own cache).
MODEL_CACHE = Path(os.environ.get("MEDIAREC_TEST_HOME", REPO / ".test-home"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "ml-100k" / "u.data").exists():
        pytest.fail(f"test data not found at {SHARED_DATA} (set MEDIAREC_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture
def tmp_home(tmp_path, monkeypatch) -> Path:
    """An empty MEDIAREC_HOME for one test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("MEDIAREC_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def model_home() -> Path:
    """A MEDIAREC_HOME whose models/ persists across test runs, so real models are pulled once."""
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    return MODEL_CACHE


def make_home(root: Path, model_home: Path) -> Path:
    """An empty MEDIAREC_HOME at ``root`` whose models/ links to the shared model cache."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models").symlink_to((model_home / "models").resolve(), target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def module_home(tmp_path_factory, model_home) -> Path:
    """A fresh MEDIAREC_HOME for one test module, set in the environment (embedded Chroma)."""
    h = make_home(tmp_path_factory.mktemp("home"), model_home)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", str(h))
    mp.delenv("MEDIAREC_CHROMA_URL", raising=False)
    yield h
    mp.undo()


@pytest.fixture
def linked_home(tmp_path, model_home, monkeypatch) -> Path:
    """A fresh MEDIAREC_HOME for one test, set in the environment (embedded Chroma)."""
    h = make_home(tmp_path / "home", model_home)
    monkeypatch.setenv("MEDIAREC_HOME", str(h))
    monkeypatch.delenv("MEDIAREC_CHROMA_URL", raising=False)
    return h


@pytest.fixture(scope="session")
def smol_path(model_home) -> str:
    """Path of the tiny test LLM (smollm2-135m) in the shared model cache."""
    from mediarec.config import get_settings
    from mediarec.models import resolve

    mp = pytest.MonkeyPatch()
    mp.setenv("MEDIAREC_HOME", str(model_home))
    try:
        return str(resolve("smollm2-135m", get_settings())["model"])
    finally:
        mp.undo()


def capturing_llm(inner):
    """The real (local) LLM ``inner`` wrapped so that every message list it is sent is recorded
    in ``.sent``; for asserting what prompts carry."""
    from mediarec.llm import LLM

    class Capturing(LLM):
        def __init__(self):
            super().__init__()
            self.inner = inner
            self.spec = inner.spec
            self.supports_schema, self.supports_scoring = inner.supports_schema, inner.supports_scoring
            self.is_local = inner.is_local
            self.sent: list[list[dict]] = []

        def _chat(self, messages, schema, opts):
            self.sent.append(messages)
            return self.inner._chat(messages, schema, opts)

        def _label_logprobs(self, messages, labels):
            self.sent.append(messages)
            return self.inner._label_logprobs(messages, labels)

    return Capturing()
