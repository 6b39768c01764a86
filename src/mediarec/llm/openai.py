"""The hosted backend: any OpenAI-compatible server through the official ``openai`` client."""

from __future__ import annotations

import os
import time
from typing import Any

from mediarec.errors import ConfigError
from mediarec.infra.redact import redact
from mediarec.llm.base import LLM, Completion, LabelScores, LLMOptions, LLMUnavailable, Messages, Usage


def _backoff(wait_exponential_jitter):
    """0.5 s, 1 s, 2 s, ... up to 8 s, plus up to 0.5 s of jitter. tenacity 9 names the first wait
    ``multiplier`` (``initial`` is deprecated there); 8.x only knows ``initial``."""
    import inspect

    first = "multiplier" if "multiplier" in inspect.signature(wait_exponential_jitter).parameters else "initial"
    return wait_exponential_jitter(**{first: 0.5}, max=8.0, jitter=0.5)


class OpenAILLM(LLM):
    """The official ``openai`` client; retries 429/5xx/connection errors with backoff and jitter."""

    scheme = "openai"
    spec_forms = "openai:MODEL"
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
