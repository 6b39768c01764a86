"""What every LLM backend offers: chat (optionally constrained by a JSON schema) and label scoring.

Capabilities are declared as attributes, as in simonw/llm: ``supports_schema`` (structured JSON
output constrained by a schema) and ``supports_scoring`` (next-token log-probabilities for
single-pass scoring). Answers are cached on disk (:mod:`mediarec.llm.cache`), keyed by model,
messages and parameters. The backends are :mod:`mediarec.llm.local` and :mod:`mediarec.llm.openai`;
:func:`mediarec.llm.registry.load_llm` makes one from a spec string.
"""

from __future__ import annotations

import contextlib
import threading
from abc import ABC, abstractmethod
from typing import Callable, Iterator

from pydantic import BaseModel

from mediarec.config import Settings
from mediarec.llm.cache import AnswerCache

Messages = list[dict[str, str]]


class LLMOptions(BaseModel):
    """Generation options shared by all backends (part of the cache key)."""

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int = 0
    timeout: float = 60.0
    retries: int = 3


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cached: bool = False
    reused_tokens: int = 0  # prompt tokens whose evaluated state came from an earlier prompt (local models)

    def add(self, other: "Usage") -> "Usage":
        return Usage(prompt_tokens=self.prompt_tokens + other.prompt_tokens,
                     completion_tokens=self.completion_tokens + other.completion_tokens,
                     reused_tokens=self.reused_tokens + other.reused_tokens,
                     seconds=self.seconds + other.seconds, cached=self.cached and other.cached)


class Completion(BaseModel):
    text: str
    usage: Usage = Usage()


class LabelScores(BaseModel):
    """Log-probabilities of each candidate label as the answer's first token."""

    logprobs: dict[str, float]
    usage: Usage = Usage()


class LLMUnavailable(Exception):
    """A transient or backend failure after retries; the caller falls back to retrieval."""


class LLM(ABC):
    """One backend. Subclasses implement ``_chat`` and, if they can, ``_label_logprobs``."""

    spec: str = ""
    #: The spec prefix that selects this backend in :func:`mediarec.llm.registry.load_llm`, and
    #: the spec forms it accepts, for the error message of an unknown spec.
    scheme: str = ""
    spec_forms: str = ""
    supports_schema: bool = False
    supports_scoring: bool = False
    is_local: bool = False

    def __init__(self, options: LLMOptions | None = None, cache: AnswerCache | None = None):
        self.options = options or LLMOptions()
        self.cache = cache or AnswerCache(None, enabled=False)
        self._stream = threading.local()

    @contextlib.contextmanager
    def streaming(self, sink: Callable[[str], None]) -> Iterator[None]:
        """While active (in this thread), a backend that can stream calls ``sink`` with the answer
        text so far as each chat completion is generated; the completion returned is unchanged."""
        self._stream.sink = sink
        try:
            yield
        finally:
            self._stream.sink = None

    def stream_sink(self) -> Callable[[str], None] | None:
        return getattr(getattr(self, "_stream", None), "sink", None)

    @classmethod
    def from_spec(cls, name: str, settings: Settings, **kw) -> "LLM":
        """The backend for the part of a spec after ``scheme:``."""
        return cls(name, **kw)

    def chat(self, messages: Messages, schema: dict | None = None, max_tokens: int | None = None) -> Completion:
        """A chat completion, from the cache when the same request was answered before."""
        opts = self.options.model_copy(update={"max_tokens": max_tokens or self.options.max_tokens})
        key = self.cache.key("chat", self.spec, messages, schema, opts.temperature, opts.max_tokens, opts.seed)
        hit = self.cache.get(key)
        if hit is not None:
            c = Completion.model_validate(hit)
            c.usage.cached = True
            return c
        c = self._chat(messages, schema, opts)
        self.cache.put(key, c.model_dump())
        return c

    def label_logprobs(self, messages: Messages, labels: list[str]) -> LabelScores:
        """Log-probability of each label as the first answer token, from one forward pass."""
        key = self.cache.key("labels", self.spec, messages, labels)
        hit = self.cache.get(key)
        if hit is not None:
            s = LabelScores.model_validate(hit)
            s.usage.cached = True
            return s
        s = self._label_logprobs(messages, labels)
        self.cache.put(key, s.model_dump())
        return s

    @abstractmethod
    def _chat(self, messages: Messages, schema: dict | None, opts: LLMOptions) -> Completion: ...

    def _label_logprobs(self, messages: Messages, labels: list[str]) -> LabelScores:
        raise NotImplementedError(f"{self.spec} cannot score labels")
