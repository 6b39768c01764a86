"""The local backend: a GGUF model run in-process by llama-cpp-python."""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from mediarec.config import Settings
from mediarec.errors import ConfigError, ModelError
from mediarec.llm.base import LLM, Choice, Completion, LabelScores, LLMOptions, LLMUnavailable, Messages, Usage, cut_at_stop, split_prefill

#: How many answers ``LocalLLM._chat_many`` decodes at once (sequences 1..N beside sequence 0).
PARALLEL_SEQUENCES = 8
_PATCH_LOCK = threading.Lock()


class ModelPool:
    """Loaded llama.cpp models, by (file, context, threads, adapter), shared by the LocalLLMs given
    this pool, each with the lock that serialises calls into its context (llama.cpp aborts the
    process on a GGML assertion when two threads use one). Its owner closes it: the composition
    root for a served recommender, a LocalLLM built without one for itself. Pools still open at
    interpreter exit are closed first, since llama-cpp-python's ``__del__`` otherwise runs after its
    C bindings are gone and prints a TypeError."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[tuple, Any] = {}
        self._model_locks: dict[str, threading.Lock] = {}
        _OPEN_POOLS.add(self)

    def __len__(self) -> int:
        return len(self._loaded)

    def model_lock(self, path: str) -> threading.Lock:
        with self._lock:
            return self._model_locks.setdefault(path, threading.Lock())

    def load(self, path: str, n_ctx: int, n_threads: int, lora: str | None = None):
        """The model loaded once for this pool (see :func:`_load_llama`)."""
        key = (path, n_ctx, n_threads, lora)
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = _load_llama(path, n_ctx, n_threads, lora)
            return self._loaded[key]

    def close(self) -> None:
        """Free every model of this pool (a later call loads again)."""
        with self._lock:
            for llm in self._loaded.values():
                with contextlib.suppress(Exception):
                    llm.close()
            self._loaded.clear()

    def __enter__(self) -> "ModelPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_OPEN_POOLS: "weakref.WeakSet[ModelPool]" = weakref.WeakSet()


@atexit.register
def _close_open_pools() -> None:
    for pool in list(_OPEN_POOLS):
        pool.close()


def _load_llama(path: str, n_ctx: int, n_threads: int, lora: str | None = None):
    """Load a GGUF, with the AMX workaround (llama.cpp issue 20824).

    On CPUs with AMX the default build's extra buffer types (weight repacking) crash on the
    first decode; turning ``use_extra_bufts`` off in the model params avoids it whatever the
    build. llama-cpp-python does not expose the flag, so it is set on the default params
    while the model loads (under a lock: the patch is process-wide while it lasts).
    """
    with _PATCH_LOCK:
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
        original_ctx = raw.llama_context_default_params

        def patched_ctx():
            # Parallel sequences for LocalLLM._chat_many (one reason per item, decoded together);
            # one KV cache shared by all of them, so sequence 0 keeps the whole context.
            params = original_ctx()
            params.n_seq_max = PARALLEL_SEQUENCES + 1
            if hasattr(params, "kv_unified"):
                params.kv_unified = True
            return params

        raw.llama_context_default_params = patched_ctx
        try:
            return Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                         n_batch=512, verbose=False, seed=0, lora_path=lora)
        except Exception as e:  # noqa: BLE001 - llama.cpp raises ValueError/RuntimeError for bad files
            what = f"model {path} with adapter {lora}" if lora else f"model {path}"
            raise ModelError(f"cannot load {what}: {e} (is the file a valid GGUF?)") from None
        finally:
            raw.llama_model_default_params = original
            raw.llama_context_default_params = original_ctx
            del llama_cpp


class LocalLLM(LLM):
    """llama-cpp-python. The model is loaded on first use into ``pool`` (shared with the other
    LocalLLMs given the same pool, calls serialised per file), or into a pool of its own that
    :meth:`close` frees. Building one reads no weights and fetches nothing: a registry model is
    located (and pulled when missing) by :meth:`prepare` or on first use."""

    scheme = "local"
    spec_forms = "local:NAME, local:/path/model.gguf"
    supports_schema = True
    supports_scoring = True
    is_local = True

    @classmethod
    def from_spec(cls, name: str, settings: Settings, **kw) -> "LocalLLM":
        return cls(name, settings=settings, **kw)

    def __init__(self, model: str, n_ctx: int = 4096, n_threads: int | None = None, settings: Settings | None = None,
                 adapter: str | Path | None = None, catalog: str | None = None, prompt_hash: str | None = None,
                 pool: ModelPool | None = None, **kw):
        super().__init__(**kw)
        from mediarec.llm.model_specs import canonical_name, check_llm

        path = Path(model)
        self._path: str | None = None
        self._settings = settings
        if model.endswith(".gguf") or path.exists():
            if not path.is_file():
                raise ConfigError(f"model file not found: {model}")
            self._path = str(path.resolve())
        else:
            model = canonical_name(model)  # one spec, and one answer cache, per model whatever its name
            check_llm(model)  # the embedder is in the registry too: not a model to chat with
        self.pool = pool if pool is not None else ModelPool()
        self._owns_pool = pool is None
        self.spec = f"local:{model}"
        self.model_name = model
        self.n_ctx = n_ctx
        # One thread per core: llama.cpp's threads spin at barriers, so more threads than free
        # cores (or a busy machine) slows prompt evaluation down many times; MEDIAREC_LLM_THREADS caps it.
        self.n_threads = n_threads or (settings.llm_threads if settings else None) or max(1, os.cpu_count() or 1)
        self._llm = None
        self.adapter: Path | None = None
        self.adapter_error: str | None = None
        if adapter is not None:
            self._use_adapter(adapter, catalog, prompt_hash)

    def _use_adapter(self, directory: str | Path, catalog: str | None, prompt_hash: str | None) -> None:
        """Rank with a trained LoRA (``mediarec train``). One that does not fit this model, catalog
        or prompt is never applied: the model then answers nothing (LLMUnavailable), so rankings
        fall back to retrieval and say why, rather than using the base model unannounced.
        ``prompt_hash``: :func:`mediarec.rank.reranker.prompt_hash` of the prompts the rankings
        will render with (``--prompts-dir``), which must be the ones the adapter was trained on."""
        from mediarec.llm.adapter import AdapterError, verify

        if prompt_hash is None:
            raise ConfigError("an adapter is checked against the prompts it ranks with: pass prompt_hash")
        try:
            path, manifest = verify(directory, self.model_sha256(), catalog, prompt_hash)
        except AdapterError as e:
            self.adapter_error = str(e)
            self.spec += "+adapter:unusable"
            return
        self.adapter = path
        # Answers with the adapter are other answers: the cache key (the spec) says which adapter.
        self.spec += f"+adapter:{manifest.adapter_sha256[:16] or path.stat().st_mtime_ns}"

    def model_sha256(self) -> str:
        """The base GGUF's sha256: the registry's pinned hash, else the file's own."""
        from mediarec.llm.model_specs import REGISTRY, get_spec
        from mediarec.llm.adapter import sha256_file

        if self.model_name in REGISTRY:
            pinned = get_spec(self.model_name).files["model"].sha256
            if pinned:
                return pinned
        return sha256_file(Path(self.path))

    def prepare(self) -> "LocalLLM":
        """Locate the model file, pulling a registry model that is missing (sha256-pinned)."""
        if self._path is None:
            from mediarec.llm.weights import resolve

            self._path = str(resolve(self.model_name, self._settings)["model"])
        return self

    @property
    def path(self) -> str:
        return self.prepare()._path

    @property
    def _lock(self) -> threading.Lock:
        return self.pool.model_lock(self.path)

    @property
    def llama(self):
        if self._llm is None:
            if self.adapter_error:
                raise LLMUnavailable(self.adapter_error)
            self._llm = self.pool.load(self.path, self.n_ctx, self.n_threads,
                                       str(self.adapter) if self.adapter else None)
        return self._llm

    def close(self) -> None:
        """Free the model when this LLM owns its pool (a shared pool is its owner's to close)."""
        self._llm = None
        if self._owns_pool:
            self.pool.close()

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
        prefix = min(self._held_prefix(tokens), len(tokens) - 1)  # always evaluate at least the last token
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
        return LabelScores(logprobs=lp, usage=Usage(prompt_tokens=len(tokens) - reused, reused_tokens=reused, seconds=time.perf_counter() - t0))

    def _choose(self, messages: Messages, options: list[str]) -> Choice:
        """Walk the options' tokens as a trie: at each point where they differ, the next token is the
        one the model rates highest among those the remaining options continue with (its share
        among them multiplies into the probability); a point where they agree costs nothing. The
        prompt is evaluated once (its prefix reused from the last prompt), then one token per step."""
        import numpy as np

        if not options:
            raise ValueError("nothing to choose from")
        t0 = time.perf_counter()
        with self._lock:
            prompt = self.tokenize(self.format_prompt(messages))
            seqs = [self.llama.tokenize(o.encode(), add_bos=False, special=False) for o in options]
            logits, reused = self.eval_prompt(prompt)
            evaluated = len(prompt) - reused
            alive, path, prob, first = list(range(len(options))), [], 1.0, {}
            while len(alive) > 1:
                pos = len(path)
                ended = [i for i in alive if len(seqs[i]) <= pos]
                if ended:  # an option that is a prefix of the others: the shortest wins
                    alive = ended[:1]
                    break
                groups: dict[int, list[int]] = {}
                for i in alive:
                    groups.setdefault(seqs[i][pos], []).append(i)
                if len(groups) > 1:
                    toks = list(groups)
                    z = logits[toks].astype(np.float64)
                    share = np.exp(z - z.max())
                    share /= share.sum()
                    best = int(np.argmax(share))
                    if not first:
                        first = {options[i]: float(share[k]) for k, t in enumerate(toks) for i in groups[t]}
                    prob *= float(share[best])
                    alive = groups[toks[best]]
                    if len(alive) == 1:
                        break
                    path.append(toks[best])
                else:
                    path.append(next(iter(groups)))
                logits, r = self.eval_prompt(prompt + path)
                evaluated += len(prompt) + len(path) - r
        if not first:
            first = {options[alive[0]]: 1.0}
        return Choice(option=options[alive[0]], probability=prob, first=first,
                      usage=Usage(prompt_tokens=evaluated, reused_tokens=reused, seconds=time.perf_counter() - t0))

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
            reused = self.reusable_prefix(messages)
            try:
                sink = self.stream_sink()
                out = self.llama.create_chat_completion(messages=messages, **kwargs) if sink is None else \
                    self._streamed_completion(messages, kwargs, sink)
            except ValueError as e:  # e.g. the prompt exceeds the context window
                raise LLMUnavailable(str(e)) from None
        usage = out.get("usage") or {}
        return Completion(text=out["choices"][0]["message"].get("content") or "",
                          usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0) - reused, reused_tokens=reused,
                                      completion_tokens=usage.get("completion_tokens", 0),
                                      seconds=time.perf_counter() - t0))

    def _streamed_completion(self, messages: Messages, kwargs: dict[str, Any], sink) -> dict[str, Any]:
        """A chat completion generated as a stream, ``sink`` called with the text so far after each
        token; returned in the shape of a non-streamed one (one chunk is one generated token)."""
        text, n = "", 0
        for chunk in self.llama.create_chat_completion(messages=messages, stream=True, **kwargs):
            delta = chunk["choices"][0].get("delta") or {}
            if "content" not in delta:  # the first chunk names the role, the last says why it stopped
                continue
            n += 1
            if delta["content"]:
                text += delta["content"]
                sink(text)
        prompt = len(self.tokenize(self.format_prompt(messages)))
        return {"choices": [{"message": {"content": text}}], "usage": {"prompt_tokens": prompt, "completion_tokens": n}}

    def _chat_many(self, conversations: list[Messages], opts: LLMOptions, stop: tuple[str, ...],
                   done) -> None:
        """The answers decoded together: their common token prefix is evaluated once (or reused
        from the context, as :meth:`eval_prompt` does) in sequence 0, copied to one sequence per
        answer, each answer's own tail is evaluated in one batch, and then every step decodes one
        greedy token for each unfinished answer in one batch. On 2 cores a step for 5 answers
        costs about 1.5 single-token steps, so five reasons take little more than one. Greedy: each
        token is the argmax of a one-sequence evaluation up to float noise (tested); exact near-ties
        may go the other way than in :meth:`_chat`, since batch shapes change the order of the sums."""
        import numpy as np

        import llama_cpp

        n = len(conversations)
        if n > PARALLEL_SEQUENCES:  # more than fit: in groups
            for start in range(0, n, PARALLEL_SEQUENCES):
                self._chat_many(conversations[start:start + PARALLEL_SEQUENCES], opts, stop,
                                lambda j, c, start=start: done(start + j, c))
            return
        t0 = time.perf_counter()
        with self._lock:
            llm = self.llama
            split = [split_prefill(m) for m in conversations]
            toks = [self.tokenize(self.format_prompt(m) + prefill) for m, prefill in split]
            if max(len(t) for t in toks) + opts.max_tokens >= self.n_ctx:
                raise LLMUnavailable(f"prompt of {max(len(t) for t in toks)} tokens exceeds the context of {self.n_ctx}")
            common = 0
            limit = min(len(t) for t in toks) - 1  # every answer evaluates at least its last prompt token
            while common < limit and all(t[common] == toks[0][common] for t in toks):
                common += 1
            ctx = llm._ctx.ctx
            mem = llama_cpp.llama_get_memory(ctx)
            reused = self._held_prefix(toks[0][:common])
            llm.n_tokens = reused
            llama_cpp.llama_memory_seq_rm(mem, -1, reused, -1)
            if reused < common:
                llm.eval(toks[0][reused:common])
            batch = llama_cpp.llama_batch_init(llm.n_batch, 0, n + 1)
            vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
            n_vocab = llm.n_vocab()
            try:
                for i in range(n):
                    llama_cpp.llama_memory_seq_cp(mem, 0, i + 1, 0, common)
                # each answer's own prompt tail, as many tokens per decode as the batch holds
                rows = [(t[k], k, i, k == len(t) - 1) for i, t in enumerate(toks) for k in range(common, len(t))]
                logits: dict[int, np.ndarray] = {}
                for s0 in range(0, len(rows), llm.n_batch):
                    logits.update(self._decode(ctx, batch, rows[s0:s0 + llm.n_batch], n_vocab))
                answers: list[list[int]] = [[] for _ in range(n)]
                pos = [len(t) for t in toks]
                texts = [""] * n
                active = list(range(n))
                while active:
                    rows = []
                    for i in active:
                        tok = int(np.argmax(logits[i]))
                        if llama_cpp.llama_vocab_is_eog(vocab, tok):
                            continue
                        answers[i].append(tok)
                        texts[i] = llm.detokenize(answers[i]).decode("utf-8", errors="ignore")
                        if any(st in texts[i] for st in stop if st) or len(answers[i]) >= opts.max_tokens:
                            continue
                        rows.append((tok, pos[i], i, True))
                        pos[i] += 1
                    for i in set(active) - {r[2] for r in rows}:  # finished this step
                        done(i, Completion(text=split[i][1] + cut_at_stop(texts[i], stop), usage=Usage(
                            prompt_tokens=len(toks[i]) - common + (common - reused if i == 0 else 0),
                            reused_tokens=reused if i == 0 else common, completion_tokens=len(answers[i]),
                            seconds=(time.perf_counter() - t0) / n)))
                    active = [r[2] for r in rows]
                    if rows:
                        logits = self._decode(ctx, batch, rows, n_vocab)
            finally:
                for i in range(n):
                    llama_cpp.llama_memory_seq_rm(mem, i + 1, -1, -1)
                llama_cpp.llama_batch_free(batch)
                llm.n_tokens = common  # sequence 0 holds the common prefix, for the next prompt to reuse

    @staticmethod
    def _decode(ctx, batch, rows: list[tuple[int, int, int, bool]], n_vocab: int) -> dict:
        """Decode ``rows`` of (token, position, answer, wants logits) in one batch, answer i in
        sequence i + 1; a copy of the logits of the rows that want them, by answer."""
        import numpy as np

        import llama_cpp

        batch.n_tokens = len(rows)
        for j, (tok, pos, i, out) in enumerate(rows):
            batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = tok, pos, 1, int(out)
            batch.seq_id[j][0] = i + 1
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            raise LLMUnavailable(f"llama.cpp could not decode the batch (code {rc})")
        return {i: np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, j), shape=(n_vocab,)).copy()
                for j, (_, _, i, out) in enumerate(rows) if out}

    def reusable_prefix(self, messages: Messages) -> int:
        """How many leading tokens of this chat prompt the context holds evaluated already (from the
        last prompt, scoring or chat): llama-cpp-python's ``generate`` keeps that part of the KV cache
        and evaluates only the rest, as :meth:`eval_prompt` does for label scoring. The score and
        explain prompts start with the same system message and history, so reasons after scoring,
        and a chat turn after the last, pay only for what changed. Call with the model lock held."""
        tokens = self.tokenize(self.format_prompt(messages))
        return max(0, min(self._held_prefix(tokens), len(tokens) - 1))

    def _held_prefix(self, tokens) -> int:
        """How many leading ``tokens`` the context's sequence 0 holds evaluated already."""
        llm = self.llama
        n = 0
        for a, b in zip(llm._input_ids[: llm.n_tokens], tokens):
            if a != b:
                break
            n += 1
        return n
