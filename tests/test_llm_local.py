"""The local llama.cpp backend with a real model (SmolLM2-135M, pulled once per machine).

Label scoring (one forward pass, KV-prefix reuse), grammar-constrained JSON, the on-disk answer
cache, and the errors a user can cause (missing file, corrupt file).
"""

from __future__ import annotations

import json
import math
import os
import stat

import pytest

from mediarec.config import get_settings
from mediarec.errors import ConfigError, ModelError
from mediarec.llm import AnswerCache, LocalLLM, load_llm
from mediarec.rank.prompts import labels as make_labels
from mediarec.rank.parse import parse_ranking
from mediarec.rank.schemas import ranking_json_schema

LABELS = make_labels(20)  # A..T


@pytest.fixture(scope="module")
def llm(smol_path) -> LocalLLM:
    # n_threads=1: the machine's cores are shared; the model is tiny.
    return LocalLLM(smol_path, n_ctx=2048, n_threads=1)


def score_messages(user_extra: str = "") -> list[dict[str, str]]:
    lines = "\n".join(f"{lab}: \"Film number {i + 1}\" ({1970 + i})" for i, lab in enumerate(LABELS))
    return [
        {"role": "system", "content": "You recommend films. Answer with one candidate label only."},
        {"role": "user", "content": f"History:\n- \"Alien\" (1979)\n- \"Blade Runner\" (1982)\n{user_extra}"
                                    f"Candidates:\n{lines}\nWhich candidate next? Answer with the label only."},
    ]


def rank_messages(n: int = 5) -> list[dict[str, str]]:
    lines = "\n".join(f"{lab}: \"Film number {i + 1}\" | science fiction" for i, lab in enumerate(LABELS))
    return [
        {"role": "system", "content": 'Answer with JSON only: {"ranking": [{"id": "A", "reason": "..."}]}. '
                                      "Keep each reason under ten words."},
        {"role": "user", "content": f"The person liked \"Alien\" (1979).\nCandidates:\n{lines}\n"
                                    f"Pick the {n} best candidates, best first, as JSON."},
    ]


# -- single-pass label scoring ----------------------------------------------------------------
@pytest.mark.llm
def test_label_logprobs_finite_and_a_distribution(llm):
    res = llm.label_logprobs(score_messages(), LABELS)
    assert list(res.logprobs) == LABELS
    assert all(math.isfinite(v) and v <= 0.0 for v in res.logprobs.values())
    total = sum(math.exp(v) for v in res.logprobs.values())
    assert 0.0 < total <= 1.0 + 1e-6  # the labels are a subset of the vocabulary
    assert res.usage.prompt_tokens > 0 and not res.usage.cached


@pytest.mark.llm
def test_label_logprobs_deterministic(llm):
    a = llm.label_logprobs(score_messages("(first)\n"), LABELS)
    b = llm.label_logprobs(score_messages("(first)\n"), LABELS)  # whole prompt in the KV cache now
    assert a.logprobs == pytest.approx(b.logprobs, abs=1e-6)
    assert b.usage.prompt_tokens <= 1  # only the last token was evaluated again


@pytest.mark.llm
def test_kv_prefix_reuse_equals_fresh_evaluation(llm):
    """A prompt that shares a prefix with the previous one reuses its KV cache: same numbers."""
    llm.label_logprobs(score_messages("Mood: tense.\n"), LABELS)
    second = score_messages("Mood: cheerful and light.\n")
    n_tokens = len(llm.tokenize(llm.format_prompt(second)))
    reused = llm.label_logprobs(second, LABELS)
    assert 0 < reused.usage.prompt_tokens < n_tokens  # the shared prefix was not evaluated again
    llm.llama.n_tokens = 0  # forget the KV cache: evaluate everything from scratch
    fresh = llm.label_logprobs(second, LABELS)
    assert fresh.usage.prompt_tokens == n_tokens
    for lab in LABELS:
        assert reused.logprobs[lab] == pytest.approx(fresh.logprobs[lab], abs=1e-3)


@pytest.mark.llm
def test_labels_sharing_a_first_token_are_refused(llm):
    with pytest.raises(ValueError, match="share a first token"):
        llm.label_token_ids(["A", "A!"])


# -- grammar-constrained chat -----------------------------------------------------------------
@pytest.mark.llm
def test_chat_with_ranking_schema_is_valid_json(llm):
    schema = ranking_json_schema(LABELS, n=5)
    comp = llm.chat(rank_messages(5), schema=schema, max_tokens=700)
    data = json.loads(comp.text)  # the grammar guarantees JSON
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(data, schema)
    assert set(data) == {"ranking"}
    assert len(data["ranking"]) == 5
    for entry in data["ranking"]:
        assert set(entry) == {"id", "reason"}
        assert entry["id"] in LABELS
        assert isinstance(entry["reason"], str) and len(entry["reason"]) <= 160
    parsed = parse_ranking(comp.text, LABELS)  # repeats (allowed by the schema) are dropped
    assert 1 <= len(parsed.order) <= 5 and len(set(parsed.order)) == len(parsed.order)
    assert comp.usage.completion_tokens > 0


@pytest.mark.llm
def test_chat_without_schema_returns_text(llm):
    comp = llm.chat([{"role": "user", "content": "Name one science fiction film."}], max_tokens=16)
    assert isinstance(comp.text, str) and comp.text.strip()
    assert 0 < comp.usage.completion_tokens <= 16


# -- answer cache -----------------------------------------------------------------------------
@pytest.mark.llm
def test_disk_cache_hit_and_permissions(smol_path, tmp_home):
    cached_llm = load_llm(f"local:{smol_path}", get_settings(), n_ctx=2048, n_threads=1)
    assert isinstance(cached_llm, LocalLLM)
    msgs = [{"role": "user", "content": "Say hello in three words."}]
    first = cached_llm.chat(msgs, max_tokens=12)
    assert not first.usage.cached
    second = cached_llm.chat(msgs, max_tokens=12)
    assert second.usage.cached and second.text == first.text
    s1 = cached_llm.label_logprobs(score_messages(), LABELS)
    s2 = cached_llm.label_logprobs(score_messages(), LABELS)
    assert not s1.usage.cached and s2.usage.cached and s2.logprobs == s1.logprobs
    # Different generation options are a different key.
    assert not cached_llm.chat(msgs, max_tokens=13).usage.cached

    root = tmp_home / "cache" / "llm"
    assert (root / "unscoped").is_dir()  # no catalog named: its own folder, apart from every catalog's
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 3
    assert not [p for p in files if p.suffix != ".json"]  # no temporary files left behind
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        json.loads(p.read_text(encoding="utf-8"))
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    for d in (p for p in root.rglob("*") if p.is_dir()):
        assert stat.S_IMODE(d.stat().st_mode) & 0o077 == 0, d


def test_corrupt_cache_entry_is_a_miss(tmp_path):
    cache = AnswerCache(tmp_path / "llm")
    key = cache.key("x")
    cache.put(key, {"text": "ok"})
    assert cache.get(key) == {"text": "ok"}
    cache._path(key).write_text("{not json", encoding="utf-8")
    assert cache.get(key) is None


# -- user errors ------------------------------------------------------------------------------
def test_missing_model_path_is_a_config_error(tmp_path, tmp_home):
    with pytest.raises(ConfigError, match="not found"):
        LocalLLM(str(tmp_path / "nope" / "model.gguf"))
    with pytest.raises(ConfigError):
        load_llm(f"local:{tmp_path / 'missing.gguf'}", get_settings())


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_gguf_is_a_model_error(tmp_path, smol_path, kind):
    bad = tmp_path / "x.gguf"
    if kind == "garbage":
        bad.write_bytes(os.urandom(1024))
    else:  # a real GGUF header, cut after 1 KB
        with open(smol_path, "rb") as fh:
            bad.write_bytes(fh.read(1024))
    broken = LocalLLM(str(bad), n_ctx=512, n_threads=1)  # loading is lazy
    with pytest.raises(ModelError, match="valid GGUF"):
        broken.chat([{"role": "user", "content": "hi"}], max_tokens=4)
    with pytest.raises(ModelError):
        broken.label_logprobs(score_messages(), LABELS)


def test_unknown_spec_is_a_config_error(tmp_home):
    with pytest.raises(ConfigError, match="unknown LLM spec 'cloud:thing': use local:NAME, local:/path/model.gguf, "
                                          "openai:MODEL or none"):
        load_llm("cloud:thing", get_settings())
    with pytest.raises(ConfigError, match="unknown LLM spec"):
        load_llm("local:", get_settings())
    assert load_llm("none", get_settings()) is None


def test_the_embedder_is_not_an_llm(tmp_home):
    """The registry's embedder given as an LLM: one clear error naming the LLMs, before anything
    is fetched or loaded (so Python callers get it too, not only the CLI)."""
    message = ("minilm-l6-int8 is an embedding model, not an LLM: use local:smollm2-135m, local:qwen2.5-coder-0.5b, "
               "local:qwen2.5-coder-1.5b, local:/path/model.gguf or openai:MODEL")
    with pytest.raises(ConfigError) as err:
        load_llm("local:minilm-l6-int8", get_settings())
    assert str(err.value) == message
    with pytest.raises(ConfigError, match="is an embedding model, not an LLM"):
        LocalLLM("minilm-l6-int8", settings=get_settings())
    assert not (tmp_home / "models" / "minilm-l6-int8").exists()  # nothing pulled for it


def test_old_model_name_loads_the_renamed_model_from_its_old_folder(tmp_home, capsys):
    """An existing user's local:qwen2.5-0.5b keeps working from its old folder, under the honest
    name: one spec (and one answer cache) per model, whatever name reached it. Loading is lazy,
    so a verified-stamped file of the right size is all the constructor needs."""
    from mediarec.llm import model_specs as specs
    from mediarec.llm import weights

    spec = specs.REGISTRY["qwen2.5-coder-0.5b"]
    f = spec.files["model"]
    old = tmp_home / "models" / "qwen2.5-0.5b"
    old.mkdir(parents=True)
    with (old / f.filename).open("wb") as fh:
        fh.truncate(f.size)
    weights._write_stamps(old, {f.filename: weights._stamp(old / f.filename, f.sha256)})
    specs._ALIASES_NOTED.clear()
    llm = load_llm("local:qwen2.5-0.5b", get_settings())
    assert isinstance(llm, LocalLLM)
    assert llm.spec == "local:qwen2.5-coder-0.5b" and llm.path == str((old / f.filename).resolve())
    assert "qwen2.5-0.5b is an alias of qwen2.5-coder-0.5b" in capsys.readouterr().err
    assert load_llm(None, get_settings()).spec == "local:qwen2.5-coder-0.5b"  # the default, by its new name


def _reason_prompts(n: int) -> list[list[dict[str, str]]]:
    """Prompts alike up to their last line, as reason.user.j2 renders them for the top items."""
    head = "History:\n" + "\n".join(f"- \"Film number {i}\" ({1970 + i}) 4/5" for i in range(12))
    return [[{"role": "system", "content": "You recommend films."},
             {"role": "user", "content": f"{head}\nIn one short sentence, why may they like \"Item {k}\" ({1980 + k})?"}]
            for k in range(n)]


def _assert_greedy(llm, messages, answer: str) -> None:
    """Every token of ``answer`` is the greedy choice of a one-sequence evaluation of the prompt
    and the answer so far, up to float noise (batch shapes change the sums' order, so exact
    near-ties may go either way)."""
    prompt = llm.tokenize(llm.format_prompt(messages))
    gen = llm.llama.tokenize(answer.encode(), add_bos=False, special=False)
    assert gen
    for k in range(len(gen)):
        logits = llm.eval_prompt(prompt + gen[:k])[0]
        assert logits[gen[k]] >= logits.max() - 0.05, (answer, k)


@pytest.mark.llm
def test_chat_many_decodes_together_what_one_at_a_time_gives(llm):
    """Answers decoded as parallel sequences over their shared prefix are greedy answers of each
    prompt alone; the shared prefix is evaluated once, and afterwards the context serves
    single prompts exactly as a cold one would."""
    convs = _reason_prompts(3)
    many = llm.chat_many(convs, max_tokens=16, stop=("\n",))
    for c, m in zip(convs, many):
        _assert_greedy(llm, c, m.text)
    assert all(c.usage.completion_tokens > 0 for c in many)
    toks = [llm.tokenize(llm.format_prompt(c)) for c in convs]
    shared = next(k for k, (a, b, c) in enumerate(zip(*toks)) if not a == b == c)  # the common prefix
    assert [c.usage.reused_tokens for c in many[1:]] == [shared, shared]  # evaluated once, in the first
    assert all(c.usage.prompt_tokens == len(t) - shared for c, t in zip(many[1:], toks[1:]))
    warm = llm.label_logprobs(score_messages("(after)\n"), LABELS)
    llm.llama.n_tokens = 0
    cold = llm.label_logprobs(score_messages("(after)\n"), LABELS)
    for lab in LABELS:
        assert warm.logprobs[lab] == pytest.approx(cold.logprobs[lab], abs=1e-3)


@pytest.mark.llm
def test_chat_many_beyond_the_parallel_sequences_keeps_the_order(llm):
    from mediarec.llm.local import PARALLEL_SEQUENCES

    """Ten answers (two groups), each started by its own assistant prefill, come back in order."""
    convs = [c + [{"role": "assistant", "content": f"Item {k} is"}]
             for k, c in enumerate(_reason_prompts(PARALLEL_SEQUENCES + 2))]
    seen: list[int] = []
    many = llm.chat_many(convs, max_tokens=6, stop=("\n",), on_answer=lambda i, c: seen.append(i))
    assert sorted(seen) == list(range(len(convs)))
    assert all(m.text.startswith(f"Item {k} is") and len(m.text) > len(f"Item {k} is") for k, m in enumerate(many))


@pytest.mark.llm
def test_chat_many_answers_come_from_the_cache(smol_path, tmp_path):
    llm = LocalLLM(smol_path, n_ctx=2048, n_threads=1, cache=AnswerCache(tmp_path / "cache"))
    convs = _reason_prompts(2)
    first = llm.chat_many(convs, max_tokens=8, stop=("\n",))
    again = llm.chat_many(convs, max_tokens=8, stop=("\n",))
    assert [c.text for c in again] == [c.text for c in first]
    assert all(c.usage.cached for c in again) and not any(c.usage.cached for c in first)


@pytest.mark.llm
def test_a_model_pool_shares_one_load_and_its_owner_frees_it(smol_path):
    """No process-global model cache: LocalLLMs given one pool share a load; the pool's owner frees
    it; an LLM built without a pool owns one of its own and frees it on close()."""
    from mediarec.llm.local import LocalLLM, ModelPool

    with ModelPool() as pool:
        a = LocalLLM(smol_path, n_threads=1, pool=pool)
        b = LocalLLM(smol_path, n_threads=1, pool=pool)
        assert len(pool) == 0  # building loads nothing
        assert a.llama is b.llama and len(pool) == 1
        b.close()
        assert len(pool) == 1  # a shared pool is its owner's to close
        assert a.chat([{"role": "user", "content": "Say hi."}], max_tokens=4).text is not None
    assert len(pool) == 0
    own = LocalLLM(smol_path, n_threads=1)
    assert own.llama is not a.llama and len(own.pool) == 1
    own.close()
    assert len(own.pool) == 0


def test_building_a_local_llm_reads_and_fetches_nothing(tmp_path):
    """A registry model is located (and pulled when missing) by prepare() or the first call, not
    by the constructor: building the 1.5B model's LLM in an empty home touches no file."""
    from mediarec.config import Settings
    from mediarec.llm.local import LocalLLM

    llm = LocalLLM("qwen2.5-coder-1.5b", settings=Settings(home=tmp_path / "home"))
    assert llm.spec == "local:qwen2.5-coder-1.5b" and not (tmp_path / "home").exists()
    assert llm.model_sha256()  # the pinned hash: the adapter check needs no weights either
