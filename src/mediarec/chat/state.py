"""What a chat session says and keeps: the reply to one message, the turns, and the saved form
(read back by :func:`read_state`, which checks the file before a session is built from it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from mediarec.catalog.model import Interaction
from mediarec.errors import MediarecError
from mediarec.rank.request import Constraints
from mediarec.rank.result import RecommendationResult

SESSION_FORMAT = 1
ReplyKind = Literal["recommendations", "ack", "clarify", "error", "info"]


class SessionReply(BaseModel):
    """What the session answers to one message."""

    kind: ReplyKind
    text: str
    result: RecommendationResult | None = None
    options: list[str] = Field(default_factory=list)


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    text: str
    time: float = 0.0


class SessionState(BaseModel):
    """The saved form of a session (what ``save`` writes and ``load`` reads)."""

    format: int = SESSION_FORMAT
    catalog: str
    user: str | None = None
    interactions: list[Interaction] = Field(default_factory=list)
    excluded: list[str] = Field(default_factory=list)
    disliked: list[str] = Field(default_factory=list)
    bans: list[str] = Field(default_factory=list)  # the excluded genres and tags (what older sessions kept)
    constraints: Constraints | None = None
    turns: list[Turn] = Field(default_factory=list)
    last_request: str | None = None
    shown: list[str] = Field(default_factory=list)
    last_mentioned: str | None = None



def read_state(path: str | Path, catalog_name: str) -> SessionState:
    """The session saved in ``path`` for the catalog ``catalog_name``; one clear error line otherwise."""
    p = Path(path).expanduser()
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as e:
        raise MediarecError(f"cannot read session file {p}: {e.strerror or e}") from None
    try:
        st = SessionState.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as e:
        first = str(e).splitlines()[0][:200]
        raise MediarecError(f"{p} is not a mediarec session file ({first})") from None
    if st.format > SESSION_FORMAT:
        raise MediarecError(f"{p} was written by a newer mediarec (format {st.format})")
    if st.catalog != catalog_name:
        raise MediarecError(f"{p} is a session of catalog {st.catalog!r}, not {catalog_name!r}")
    return st
