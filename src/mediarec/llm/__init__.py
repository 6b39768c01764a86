"""LLM backends (local llama.cpp, any OpenAI-compatible server) and the weights they run on.

``load_llm("local:qwen2.5-coder-0.5b")`` gives a backend; every backend offers :class:`LLM`'s
``chat`` and ``label_logprobs``, answered once and then read from the :class:`AnswerCache`.
"""

from mediarec.llm.base import LLM, Completion, LabelScores, LLMOptions, LLMUnavailable, Messages, Usage
from mediarec.llm.cache import AnswerCache
from mediarec.llm.local import LocalLLM
from mediarec.llm.openai import OpenAILLM
from mediarec.llm.registry import BACKENDS, load_llm

__all__ = ["LLM", "Completion", "LabelScores", "LLMOptions", "LLMUnavailable", "Messages", "Usage", "AnswerCache",
           "LocalLLM", "OpenAILLM", "BACKENDS", "load_llm"]
