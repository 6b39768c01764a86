"""LLM backends behind one small protocol: local llama.cpp and any OpenAI-compatible server.

Spec strings: ``local:NAME`` (a registry model) or ``local:/path/model.gguf``; ``openai:MODEL``
(the official client against ``OPENAI_BASE_URL`` with ``OPENAI_API_KEY``); ``none`` (no LLM).
Capabilities are declared as attributes, as in simonw/llm: ``supports_schema`` (structured JSON
output constrained by a schema) and ``supports_scoring`` (next-token log-probabilities for
single-pass scoring). Answers are cached on disk, keyed by model, messages and parameters.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mediarec.config import Settings, get_settings
from mediarec.errors import ConfigError, ModelError
from mediarec.infra.redact import redact
from mediarec.infra.atomic import atomic_write_text

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

    def add(self, other: "Usage") -> "Usage":
        return Usage(prompt_tokens=self.prompt_tokens + other.prompt_tokens,
                     completion_tokens=self.completion_tokens + other.completion_tokens,
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
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with contextlib.suppress(OSError):
            os.chmod(self.root, 0o700)
        atomic_write_text(path, json.dumps(value), private=True)


class LLM(ABC):
    """One backend. Subclasses implement ``_chat`` and, if they can, ``_label_logprobs``."""

    spec: str = ""
    supports_schema: bool = False
    supports_scoring: bool = False
    is_local: bool = False

    def __init__(self, options: LLMOptions | None = None, cache: AnswerCache | None = None):
        self.options = options or LLMOptions()
        self.cache = cache or AnswerCache(None, enabled=False)

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


# ---------------------------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------------------------
_LOAD_LOCK = threading.Lock()
_LOADED: dict[tuple, Any] = {}
_MODEL_LOCKS: dict[str, threading.Lock] = {}


def _model_lock(path: str) -> threading.Lock:
    """One lock per model file, shared by every LocalLLM of that file: they share the loaded
    ``Llama`` (see ``_LOADED``), whose context must not be used by two threads at once
    (llama.cpp aborts the process on a GGML assertion when it is)."""
    with _LOAD_LOCK:
        return _MODEL_LOCKS.setdefault(path, threading.Lock())


def _load_llama(path: str, n_ctx: int, n_threads: int):
    """Load a GGUF once per process, with the AMX workaround (llama.cpp issue 20824).

    On CPUs with AMX the default build's extra buffer types (weight repacking) crash on the
    first decode; turning ``use_extra_bufts`` off in the model params avoids it whatever the
    build. llama-cpp-python does not expose the flag, so it is set on the default params
    while the model loads.
    """
    key = (path, n_ctx, n_threads)
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        import llama_cpp
        from llama_cpp import Llama
        from llama_cpp import llama as llama_module

        raw = llama_module.llama_cpp
        original = raw.llama_model_default_params

        def patched():
            params = original()
            if hasattr(params, "use_extra_bufts"):
                params.use_extra_bufts = False
            return params

        raw.llama_model_default_params = patched
        try:
            llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                        n_batch=512, verbose=False, seed=0)
        except Exception as e:  # noqa: BLE001 - llama.cpp raises ValueError/RuntimeError for bad files
            raise ModelError(f"cannot load model {path}: {e} (is the file a valid GGUF?)") from None
        finally:
            raw.llama_model_default_params = original
        del llama_cpp
        if not _LOADED:
            atexit.register(_close_all)
        _LOADED[key] = llm
        return llm


def _close_all() -> None:
    """Free loaded models before interpreter shutdown; llama-cpp-python's ``__del__`` otherwise
    runs after its C bindings are gone and prints a TypeError at exit."""
    with _LOAD_LOCK:
        for llm in _LOADED.values():
            with contextlib.suppress(Exception):
                llm.close()
        _LOADED.clear()


class LocalLLM(LLM):
    """llama-cpp-python; the model is loaded once per process and reused (calls are serialised,
    across every LocalLLM of the same file)."""

    supports_schema = True
    supports_scoring = True
    is_local = True

    def __init__(self, model: str, n_ctx: int = 4096, n_threads: int | None = None, settings: Settings | None = None,
                 **kw):
        super().__init__(**kw)
        from mediarec.llm.weights import resolve

        path = Path(model)
        if model.endswith(".gguf") or path.exists():
            if not path.is_file():
                raise ConfigError(f"model file not found: {model}")
            self.path = str(path.resolve())
        else:
            self.path = str(resolve(model, settings)["model"])
        self.spec = f"local:{model}"
        self.model_name = model
        self.n_ctx = n_ctx
        # One thread per core: llama.cpp's threads spin at barriers, so more threads than free
        # cores (or a busy machine) slows prompt evaluation down many times; MEDIAREC_LLM_THREADS caps it.
        self.n_threads = n_threads or (settings.llm_threads if settings else None) or max(1, os.cpu_count() or 1)
        self._llm = None
        self._lock = _model_lock(self.path)

    @property
    def llama(self):
        if self._llm is None:
            self._llm = _load_llama(self.path, self.n_ctx, self.n_threads)
        return self._llm

    def format_prompt(self, messages: Messages) -> str:
        """The chat template from the GGUF applied to the messages, ending where the assistant answers."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.llama
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
            return text + "assistant: "
        eos = llm._model.token_get_text(llm.token_eos())
        bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() >= 0 else ""
        formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        return formatter(messages=messages).prompt

    def tokenize(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, messages: Messages) -> int:
        return len(self.tokenize(self.format_prompt(messages)))

    def eval_prompt(self, tokens: list[int]):
        """Evaluate tokens reusing the KV cache of a shared prefix; returns the last position's logits."""
        import numpy as np

        llm = self.llama
        if len(tokens) >= self.n_ctx:
            raise LLMUnavailable(f"prompt of {len(tokens)} tokens exceeds the context of {self.n_ctx}")
        prefix = 0
        for a, b in zip(llm._input_ids[: llm.n_tokens], tokens):
            if a != b:
                break
            prefix += 1
        prefix = min(prefix, len(tokens) - 1)  # always evaluate at least the last token
        llm.n_tokens = prefix
        llm.eval(tokens[prefix:])
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).copy(), prefix

    def _label_logprobs(self, messages: Messages, labels: list[str]) -> LabelScores:
        import numpy as np

        t0 = time.perf_counter()
        with self._lock:
            tokens = self.tokenize(self.format_prompt(messages))
            label_tokens = self.label_token_ids(labels)
            logits, reused = self.eval_prompt(tokens)
        logits = logits.astype(np.float64)
        m = logits.max()
        logz = m + math.log(float(np.exp(logits - m).sum()))
        lp = {lab: float(logits[t] - logz) for lab, t in zip(labels, label_tokens)}
        return LabelScores(logprobs=lp, usage=Usage(prompt_tokens=len(tokens) - reused, seconds=time.perf_counter() - t0))

    def label_token_ids(self, labels: list[str]) -> list[int]:
        """The first token of each label as the model would write it; labels must not share one."""
        ids = [self.llama.tokenize(lab.encode(), add_bos=False, special=False)[0] for lab in labels]
        if len(set(ids)) != len(ids):
            raise ValueError("candidate labels share a first token; use single-token labels")
        return ids

    def _chat(self, messages: Messages, schema: dict | None, opts: LLMOptions) -> Completion:
        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"temperature": opts.temperature, "max_tokens": opts.max_tokens, "seed": opts.seed}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        with self._lock:
            try:
                out = self.llama.create_chat_completion(messages=messages, **kwargs)
            except ValueError as e:  # e.g. the prompt exceeds the context window
                raise LLMUnavailable(str(e)) from None
        usage = out.get("usage") or {}
        return Completion(text=out["choices"][0]["message"].get("content") or "",
                          usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0),
                                      completion_tokens=usage.get("completion_tokens", 0),
                                      seconds=time.perf_counter() - t0))


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible servers
# ---------------------------------------------------------------------------------------------
def _backoff(wait_exponential_jitter):
    """0.5 s, 1 s, 2 s, ... up to 8 s, plus up to 0.5 s of jitter. tenacity 9 names the first wait
    ``multiplier`` (``initial`` is deprecated there); 8.x only knows ``initial``."""
    import inspect

    first = "multiplier" if "multiplier" in inspect.signature(wait_exponential_jitter).parameters else "initial"
    return wait_exponential_jitter(**{first: 0.5}, max=8.0, jitter=0.5)


class OpenAILLM(LLM):
    """The official ``openai`` client; retries 429/5xx/connection errors with backoff and jitter."""

    supports_schema = True
    supports_scoring = True  # through logprobs/top_logprobs where the server has them

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, **kw):
        super().__init__(**kw)
        import openai

        self.model = model
        self.spec = f"openai:{model}"
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            if base_url and any(h in base_url for h in ("127.0.0.1", "localhost", "[::1]")):
                api_key = "no-key-needed-for-loopback"
            else:
                raise ConfigError("openai backend: set OPENAI_API_KEY (and OPENAI_BASE_URL for a non-OpenAI server)")
        self.base_url = base_url
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=self.options.timeout, max_retries=0)
        self._schema_mode = "json_schema"  # downgraded to json_object, then none, when the server refuses

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAILLM(model={self.model!r}, base_url={self.base_url!r})"

    def _call(self, **kwargs):
        import openai
        from tenacity import (RetryError, Retrying, retry_if_exception, stop_after_attempt, stop_after_delay,
                              wait_exponential_jitter)

        def transient(e: BaseException) -> bool:
            if isinstance(e, (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError)):
                return True
            return isinstance(e, openai.APIStatusError) and e.status_code >= 500 and not _refuses_format(e)

        base_wait = _backoff(wait_exponential_jitter)

        def wait(state) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = _retry_after(exc)
            return min(after, 30.0) if after is not None else base_wait(state)

        try:
            for attempt in Retrying(retry=retry_if_exception(transient), wait=wait, reraise=False,
                                    stop=stop_after_attempt(self.options.retries + 1) | stop_after_delay(
                                        self.options.timeout * (self.options.retries + 1))):
                with attempt:
                    out = self.client.chat.completions.create(model=self.model, **kwargs)
        except RetryError as e:
            last = e.last_attempt.exception()
            raise LLMUnavailable(self._scrub(f"{type(last).__name__}: {_short(last)} after "
                                             f"{e.last_attempt.attempt_number} attempts")) from None
        except openai.APIStatusError as e:
            err = LLMUnavailable(self._scrub(f"HTTP {e.status_code}: {_short(e)}"))
            err.format_refused = e.status_code == 400 or _refuses_format(e)
            raise err from None
        except openai.OpenAIError as e:
            raise LLMUnavailable(self._scrub(f"{type(e).__name__}: {_short(e)}")) from None
        # A proxy's HTML page or other non-JSON body comes back from the client as a plain str.
        if not isinstance(getattr(out, "choices", None), list):
            raise LLMUnavailable(self._scrub(f"the server's answer is not a chat completion: {_short(out, 120)!r}"))
        return out

    def _scrub(self, text: str) -> str:
        """An error message without the API key: a server or proxy may quote it back (a 401 saying
        "Incorrect API key provided: sk-..."), and these messages end up in results, logs and sessions."""
        return redact(text, [getattr(self.client, "api_key", None)])

    def _chat(self, messages: Messages, schema: dict | None, opts: LLMOptions) -> Completion:
        import openai

        t0 = time.perf_counter()
        kwargs: dict[str, Any] = {"messages": messages, "temperature": opts.temperature,
                                  "max_tokens": opts.max_tokens, "seed": opts.seed}
        while True:
            if schema is not None and self._schema_mode == "json_schema":
                kwargs["response_format"] = {"type": "json_schema",
                                             "json_schema": {"name": "answer", "schema": schema, "strict": True}}
            elif schema is not None and self._schema_mode == "json_object":
                kwargs["response_format"] = {"type": "json_object"}
            else:
                kwargs.pop("response_format", None)
            try:
                out = self._call(**kwargs)
                break
            except LLMUnavailable as e:
                if schema is not None and self._schema_mode != "none" and getattr(e, "format_refused", False):
                    self._schema_mode = "json_object" if self._schema_mode == "json_schema" else "none"
                    continue
                raise
        del openai
        u = out.usage
        return Completion(text=(out.choices[0].message.content or "") if out.choices else "",
                          usage=Usage(prompt_tokens=getattr(u, "prompt_tokens", 0) or 0,
                                      completion_tokens=getattr(u, "completion_tokens", 0) or 0,
                                      seconds=time.perf_counter() - t0))

    def _label_logprobs(self, messages: Messages, labels: list[str]) -> LabelScores:
        t0 = time.perf_counter()
        out = self._call(messages=messages, max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=20)
        try:
            top = out.choices[0].logprobs.content[0].top_logprobs
        except (AttributeError, IndexError, TypeError):
            raise LLMUnavailable("the server returned no logprobs") from None
        found: dict[str, float] = {}
        for t in top:
            tok = (t.token or "").strip()
            if tok in labels and tok not in found:
                found[tok] = float(t.logprob)
        if not found:
            raise LLMUnavailable("no candidate label among the server's top logprobs")
        floor = min(found.values()) - 1.0  # labels outside the top list: below everything seen
        u = out.usage
        return LabelScores(logprobs={lab: found.get(lab, floor) for lab in labels},
                           usage=Usage(prompt_tokens=getattr(u, "prompt_tokens", 0) or 0,
                                       completion_tokens=getattr(u, "completion_tokens", 0) or 0,
                                       seconds=time.perf_counter() - t0))


def _refuses_format(e: BaseException) -> bool:
    """A request error about ``response_format``: llama-cpp-python's server answers a
    ``json_schema`` format it does not know with HTTP 500 (422 elsewhere), not 400; it is no
    transient failure, and the caller downgrades the format instead of retrying."""
    return getattr(e, "status_code", None) in (400, 422, 500) and "response_format" in str(e)


def _retry_after(exc: BaseException | None) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if not headers:
        return None
    try:
        return max(0.0, float(headers.get("retry-after")))
    except (TypeError, ValueError):
        return None


def _short(e: object, n: int = 200) -> str:
    return str(e).replace("\n", " ")[:n]


def load_llm(spec: str | None, settings: Settings | None = None, options: LLMOptions | None = None,
             cache: bool = True, **kw) -> LLM | None:
    """An LLM from a spec string; ``none`` (or empty) gives None. Configuration errors raise ConfigError."""
    settings = settings or get_settings()
    spec = (spec or settings.llm).strip()
    if spec.lower() in ("none", "off", ""):
        return None
    kind, _, name = spec.partition(":")
    if not name:
        kind, name = ("local", spec) if spec.endswith(".gguf") else (kind, "")
    answer_cache = AnswerCache(settings.cache_dir / "llm", enabled=cache)
    if kind == "local" and name:
        return LocalLLM(name, settings=settings, options=options, cache=answer_cache, **kw)
    if kind == "openai" and name:
        return OpenAILLM(name, options=options, cache=answer_cache, **kw)
    raise ConfigError(f"unknown LLM spec {spec!r}: use local:NAME, local:/path/model.gguf, openai:MODEL or none")
