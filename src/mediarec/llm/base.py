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
from typing import Any, Callable, Iterator

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


class Choice(BaseModel):
    """Which of several answers (words, possibly several tokens each) the model would write, and
    its probability among them (constrained to the options, token by token)."""

    option: str
    probability: float
    first: dict[str, float] = {}  # each option's share at the first token (options sharing it share it)
    usage: Usage = Usage()


def split_prefill(messages: Messages) -> tuple[Messages, str]:
    """The messages without a final ``assistant`` message, and that message's text (the start
    of the answer the model is to continue; "" when there is none)."""
    if messages and messages[-1].get("role") == "assistant":
        return messages[:-1], messages[-1].get("content") or ""
    return messages, ""


def cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """``text`` up to the first occurrence of any stop string."""
    cut = min((k for k in (text.find(st) for st in stop if st) if k >= 0), default=len(text))
    return text[:cut]


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

    def prepare(self) -> "LLM":
        """Fetch or locate what the first call needs (a local model's weights); building an LLM
        does neither, so the composition root calls this where a missing model should fail early."""
        return self

    def close(self) -> None:
        """Free what this LLM holds (a local model); a later call loads it again."""

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

    def chat_many(self, conversations: list[Messages], max_tokens: int | None = None, stop: tuple[str, ...] = (),
                  on_answer: Callable[[int, Completion], None] | None = None) -> list[Completion]:
        """Independent short answers to several prompts (one reason per recommended item), each cut
        at the first of ``stop``. A conversation may end with an ``assistant`` message: the start
        of its answer, which a local model continues (the text returned includes it) and other
        backends leave out. Cached one by one like :meth:`chat`; ``on_answer(i, completion)``
        is called as each is ready. Backends answer the uncached ones together where they can: a
        local model decodes them as parallel sequences of one batch over their shared prefix
        (:meth:`mediarec.llm.local.LocalLLM._chat_many`), a server gets concurrent requests."""
        opts = self.options.model_copy(update={"max_tokens": max_tokens or self.options.max_tokens})
        keys = [self.cache.key("chat_many", self.spec, m, list(stop), opts.temperature, opts.max_tokens, opts.seed)
                for m in conversations]
        out: list[Completion | None] = [None] * len(conversations)
        for i, key in enumerate(keys):
            hit = self.cache.get(key)
            if hit is not None:
                out[i] = Completion.model_validate(hit)
                out[i].usage.cached = True
                if on_answer is not None:
                    on_answer(i, out[i])
        todo = [i for i, c in enumerate(out) if c is None]

        def done(j: int, c: Completion) -> None:
            i = todo[j]
            out[i] = c
            self.cache.put(keys[i], c.model_dump())
            if on_answer is not None:
                on_answer(i, c)

        if todo:
            self._chat_many([conversations[i] for i in todo], opts, tuple(stop), done)
        return out  # type: ignore[return-value]

    def _chat_many(self, conversations: list[Messages], opts: LLMOptions, stop: tuple[str, ...],
                   done: Callable[[int, Completion], None]) -> None:
        """Default: concurrent :meth:`_chat` calls (a server answers them in parallel), cut at ``stop``."""
        from concurrent.futures import ThreadPoolExecutor

        def one(j: int) -> None:
            c = self._chat(split_prefill(conversations[j])[0], None, opts)
            done(j, c.model_copy(update={"text": cut_at_stop(c.text, stop)}))

        with ThreadPoolExecutor(max_workers=min(5, len(conversations))) as pool:
            for f in [pool.submit(one, j) for j in range(len(conversations))]:
                f.result()

    def label_logprobs(self, messages: Messages, labels: list[str]) -> LabelScores:
        """Log-probability of each label as the first answer token, from one forward pass."""
        return self._cached(LabelScores, lambda: self._label_logprobs(messages, labels), "labels", messages, labels)

    def choose(self, messages: Messages, options: list[str]) -> Choice:
        """The option the model would answer with, read from its logits restricted to the options
        (no sampling, no JSON): one forward pass of the prompt, then one token for each token on
        which the options still differ."""
        return self._cached(Choice, lambda: self._choose(messages, options), "choose", messages, options)

    def _cached(self, model: Any, compute: Any, *key_parts: Any) -> Any:
        """An answer (a Pydantic model with ``usage``) from the answer cache, else computed and stored."""
        key = self.cache.key(key_parts[0], self.spec, *key_parts[1:])
        hit = self.cache.get(key)
        if hit is not None:
            out = model.model_validate(hit)
            out.usage.cached = True
            return out
        out = compute()
        self.cache.put(key, out.model_dump())
        return out

    def _choose(self, messages: Messages, options: list[str]) -> Choice:
        raise NotImplementedError(f"{self.spec} cannot choose among options by their logits")

    @abstractmethod
    def _chat(self, messages: Messages, schema: dict | None, opts: LLMOptions) -> Completion: ...

    def _label_logprobs(self, messages: Messages, labels: list[str]) -> LabelScores:
        raise NotImplementedError(f"{self.spec} cannot score labels")
