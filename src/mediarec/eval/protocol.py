"""How a system is evaluated, declared as data: a small JSON document, not code.

In the spirit of RecBole, a protocol file names the split, the ranking mode (full or sampled),
the users, the seed, the cut-offs and the bootstrap size. The built-in protocols ship inside
the package (``mediarec/eval/protocols/*.json``) and are read with ``importlib.resources``, so
``--protocol NAME`` works from an installed wheel, not only from a checkout.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mediarec.errors import ConfigError

__all__ = ["Anchor", "EvalProtocol", "builtin_protocols"]


def _protocols_folder():
    return files("mediarec.eval") / "protocols"


# Short names for built-in protocols: "llamarec" and "lrurec" are the anchor papers' own settings.
ALIASES = {"llamarec": "ml-latest-small-llamarec", "lrurec": "ml-1m-lrurec"}


def builtin_protocols() -> list[str]:
    """Names of the protocols shipped with the package ("ml-100k-full", ...), sorted."""
    return sorted(p.name[: -len(".json")] for p in _protocols_folder().iterdir() if p.name.endswith(".json"))


class Anchor(BaseModel):
    """A published result on this protocol, shown beside ours and marked as the paper's.

    ``metrics`` uses the harness's names ("ndcg@10", "hr@10"; a paper's Recall@k with one
    held-out target per user is HR@k)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str
    source: str
    metrics: dict[str, float]


class EvalProtocol(BaseModel):
    """How a system is evaluated; loaded from a protocol file or a built-in name.

    ``users``: evaluate a seeded sample of this many users (None = all eligible users).
    ``validation_users``: the same for the *valid* phase (None = as many as ``users``).
    ``min_history``: users with fewer interactions than this in the whole log are not evaluated
    (the default 1 keeps every user, including one-interaction users with an empty history).
    ``bootstrap``: resamples for the confidence intervals and the paired test (0 = none).
    ``core``: before the split, keep only users and items with at least this many interactions,
    filtering iteratively as LlamaRec does (0 = no filter). ``ties``: how equal timestamps are
    ordered, ``log-order`` (position in the log) or ``dense-id`` (LlamaRec's dense item ids); see
    :mod:`mediarec.eval.split`. ``anchors``: published numbers printed beside ours.
    ``targets``: ``new`` (the default, and the only one comparable with the anchors) evaluates the
    users whose target they had not consumed before, among the items they have not consumed;
    ``all`` evaluates every user, a repeat target included, among every item but their disliked
    and low-rated ones (repeats allowed: issue 28).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    dataset: str | None = None
    split: Literal["leave-last-out"] = "leave-last-out"
    mode: Literal["full", "sampled"] = "full"
    n_negatives: int = Field(19, ge=1)
    users: int | None = Field(None, ge=1)
    seed: int = 0
    validation_users: int | None = Field(None, ge=1)
    ks: tuple[int, ...] = (5, 10, 20)
    min_history: int = Field(1, ge=1)
    bootstrap: int = Field(1000, ge=0)
    core: int = Field(0, ge=0)
    ties: Literal["log-order", "dense-id"] = "log-order"
    anchors: tuple[Anchor, ...] = ()
    targets: Literal["new", "all"] = "new"

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(k < 1 for k in v):
            raise ValueError("ks must be positive cut-offs")
        return tuple(sorted(set(v)))

    @classmethod
    def load(cls, path: str | Path) -> "EvalProtocol":
        """A protocol file; a bare name without a path ("ml-100k-full") is a built-in protocol."""
        p = Path(path)
        source = p
        if not p.exists() and p.suffix != ".json" and len(p.parts) == 1:
            source = _protocols_folder() / f"{ALIASES.get(p.name, p.name)}.json"
        try:
            text = source.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such protocol file (built-in protocols: "
                              f"{', '.join(builtin_protocols() + sorted(ALIASES))})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{source}:{e.lineno}: not valid JSON: {e.msg}") from None
        data.setdefault("name", Path(source.name).stem)
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "(root)"
            raise ConfigError(f"{source}: bad protocol field {loc}: {first['msg']}") from None
