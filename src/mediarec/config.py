"""One settings object for paths and defaults, read from the environment (``MEDIAREC_*``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from mediarec.infra.paths import Layout

#: The models used when none is named: written here only (the registry, the index and the CLI read them).
DEFAULT_LLM = "qwen2.5-coder-0.5b"
DEFAULT_EMBEDDER = "minilm-l6-int8"


def _default_home() -> Path:
    env = os.environ.get("MEDIAREC_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mediarec"


class Settings(BaseModel):
    """Where mediarec keeps models, indexes and caches, and which models it uses by default."""

    home: Path = Field(default_factory=_default_home)
    # the text embedder; MEDIAREC_EMBEDDER picks another (minilm-l6-int8-static, docs/scaling.md)
    embedder: str = Field(default_factory=lambda: os.environ.get("MEDIAREC_EMBEDDER") or DEFAULT_EMBEDDER)
    llm: str = f"local:{DEFAULT_LLM}"
    llm_threads: int | None = Field(
        default_factory=lambda: int(os.environ["MEDIAREC_LLM_THREADS"]) if os.environ.get("MEDIAREC_LLM_THREADS") else None)
    chroma_url: str | None = Field(default_factory=lambda: os.environ.get("MEDIAREC_CHROMA_URL") or None)

    @property
    def layout(self) -> Layout:
        """Where everything lives under ``home`` (:mod:`mediarec.infra.paths`)."""
        return Layout(self.home)

    @property
    def models_dir(self) -> Path:
        return self.layout.models

    @property
    def index_dir(self) -> Path:
        return self.layout.index

    @property
    def cache_dir(self) -> Path:
        return self.layout.cache

    @property
    def data_dir(self) -> Path:
        return self.layout.data


def get_settings(**overrides) -> Settings:
    """Fresh settings (the environment is read at call time, so tests can point MEDIAREC_HOME elsewhere)."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
