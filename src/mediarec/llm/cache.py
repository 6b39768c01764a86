"""The LLM answer cache: the same request to the same model is answered once, then read from disk."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mediarec.infra.atomic import atomic_write_text


class AnswerCache:
    """JSON answers on disk under $MEDIAREC_HOME/cache/llm, user-only permissions, atomic writes."""

    def __init__(self, root: Path | None, enabled: bool = True):
        self.root = Path(root) if root else None
        self.enabled = enabled and root is not None

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if not self.enabled:
            return None
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, value: dict) -> None:
        if not self.enabled:
            return
        path = self._path(key)
        for d in reversed([path.parent, *path.parent.parents]):  # every folder it creates is owner-only
            if not d.exists():
                d.mkdir(exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(self.root, 0o700)
        atomic_write_text(path, json.dumps(value), private=True)
