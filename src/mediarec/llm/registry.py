"""``load_llm(spec)``: an LLM from a spec string, one backend class per scheme.

Spec strings: ``local:NAME`` (a registry model) or ``local:/path/model.gguf`` (a bare ``.gguf``
path also means local); ``openai:MODEL`` (the official client against ``OPENAI_BASE_URL`` with
``OPENAI_API_KEY``); ``none`` (no LLM). A new backend is an :class:`~mediarec.llm.base.LLM`
subclass with a ``scheme`` and ``spec_forms``, added to :data:`BACKENDS`.
"""

from __future__ import annotations

from mediarec.config import Settings, get_settings
from mediarec.errors import ConfigError
from mediarec.llm.base import LLM, LLMOptions
from mediarec.llm.cache import AnswerCache
from mediarec.llm.local import LocalLLM
from mediarec.llm.openai import OpenAILLM

#: Scheme -> backend class; the part of a spec after ``scheme:`` goes to ``from_spec``.
BACKENDS: dict[str, type[LLM]] = {cls.scheme: cls for cls in (LocalLLM, OpenAILLM)}


def load_llm(spec: str | None, settings: Settings | None = None, options: LLMOptions | None = None,
             cache: bool = True, cache_scope: str | None = None, **kw) -> LLM | None:
    """An LLM from a spec string; ``none`` (or empty) gives None. Configuration errors raise ConfigError.

    Its answers are cached per catalog (``cache_scope``, else the ``catalog`` keyword): a prompt
    carries a person's history, and that stays with the catalog it came from (``forget`` clears one)."""
    settings = settings or get_settings()
    spec = (spec or settings.llm).strip()
    if spec.lower() in ("none", "off", ""):
        return None
    scheme, _, name = spec.partition(":")
    if not name:
        scheme, name = ("local", spec) if spec.endswith(".gguf") else (scheme, "")
    backend = BACKENDS.get(scheme)
    if backend is None or not name:
        forms = ", ".join(cls.spec_forms for cls in BACKENDS.values())
        raise ConfigError(f"unknown LLM spec {spec!r}: use {forms} or none")
    answer_cache = AnswerCache(settings.layout.llm_cache_of(cache_scope or kw.get("catalog")), enabled=cache)
    return backend.from_spec(name, settings, options=options, cache=answer_cache, **kw)
