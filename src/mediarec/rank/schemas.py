"""JSON schemas of the prompts' answers, for llama.cpp's grammar or a server's structured output."""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel, Field


def _entries_schema(key: str, labels: Sequence[str], n: int, max_chars: int) -> dict[str, Any]:
    labs = list(dict.fromkeys(str(x) for x in labels))
    if not labs:
        raise ValueError("no candidate labels")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, not {n!r}")
    n = min(n, len(labs))
    return {
        "type": "object",
        "properties": {
            key: {
                "type": "array",
                "minItems": n,
                "maxItems": n,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "enum": labs},
                        "reason": {"type": "string", "maxLength": int(max_chars)},
                    },
                    "required": ["id", "reason"],
                    "additionalProperties": False,
                },
            }
        },
        "required": [key],
        "additionalProperties": False,
    }


def ranking_json_schema(labels: Sequence[str], n: int, reason_max_chars: int = 160) -> dict[str, Any]:
    """JSON schema of ``{"ranking": [{"id": <label>, "reason": <str>}]}`` with exactly n entries.

    For llama.cpp's grammar or a server's structured output. ``n`` is capped at the number of
    labels. JSON schema cannot say "each id once" for objects; :func:`parse_ranking` drops repeats.
    """
    return _entries_schema("ranking", labels, n, reason_max_chars)


def reasons_json_schema(labels: Sequence[str], n: int, max_chars: int = 160) -> dict[str, Any]:
    """Schema of the explain prompt's answer ``{"reasons": [{"id": <label>, "reason": <str>}]}``."""
    return _entries_schema("reasons", labels, n, max_chars)


class ProfileAnswer(BaseModel):
    """The profile prompt's answer."""

    themes: list[str] = Field(default_factory=list)
    moods: list[str] = Field(default_factory=list)
    genres: list[str] = Field(default_factory=list)
    eras: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    summary: str = ""


def profile_json_schema(max_items: int = 6, item_max_chars: int = 40, summary_max_chars: int = 300) -> dict[str, Any]:
    """Schema of the profile prompt's answer (lists of short phrases and a summary)."""
    lst = {"type": "array", "maxItems": int(max_items),
           "items": {"type": "string", "maxLength": int(item_max_chars)}}
    keys = ["themes", "moods", "genres", "eras", "keywords"]
    props: dict[str, Any] = {k: dict(lst) for k in keys}
    props["summary"] = {"type": "string", "maxLength": int(summary_max_chars)}
    return {"type": "object", "properties": props, "required": keys + ["summary"],
            "additionalProperties": False}
