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
