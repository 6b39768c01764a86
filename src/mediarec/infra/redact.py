"""Secrets never leave the process: one scrubber for everything mediarec writes or shows.

Used on error messages from hosted LLMs (a 401 may quote the key back), on chat turns and on
saved sessions. It removes the values of the known key variables, any extra secrets the caller
holds (a key passed in code), and anything shaped like an API key (``sk-…``, ``hf_…``).
"""

from __future__ import annotations

import os
import re
from typing import Iterable

SECRET_ENV_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_KEY_SHAPE = re.compile(r"\b(sk|hf|pk|rk)[-_][A-Za-z0-9_\-]{8,}")
MASK = "[redacted]"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every secret (environment keys, ``secrets``, key-shaped words) masked."""
    values = [os.environ.get(name) for name in SECRET_ENV_VARS] + list(secrets)
    for v in values:
        if v and len(v) >= 6:
            text = text.replace(v, MASK)
    return _KEY_SHAPE.sub(MASK, text)
