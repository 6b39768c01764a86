"""The MiniLM ONNX embedding function: real model, real Chroma (no mocks)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402
from chromadb.utils.embedding_functions import known_embedding_functions  # noqa: E402

from mediarec.llm import weights as models  # noqa: E402
from mediarec.config import Settings  # noqa: E402
from mediarec.catalog import load_dataset  # noqa: E402
from mediarec.index.embeddings import DIMENSION, EMBEDDER_NAME, MiniLMEmbeddingFunction  # noqa: E402

# The embedder itself is the subject: every call embeds for real (no session cache, see conftest.py).
pytestmark = pytest.mark.no_embedding_cache


@pytest.fixture(scope="module")
def model_files(model_home):
    return models.resolve(EMBEDDER_NAME, Settings(home=model_home), quiet=True)


@pytest.fixture(scope="module")
def embedder(model_files) -> MiniLMEmbeddingFunction:
    return MiniLMEmbeddingFunction(model_files["model"], model_files["tokenizer"])


@pytest.fixture(scope="module")
def item_texts(shared_data) -> list[str]:
    """Real catalogue texts of very different lengths (ml-100k titles/genres), plus short and long oddities."""
    cat = load_dataset("movielens-100k", shared_data)
    texts = [it.text() for it in list(cat.items.values())[:40]]
    texts += ["Alien", "a", "calm piano music for studying", "jazz " * 40,
              "A crew aboard a deep-space freighter is hunted by a shape-shifting alien predator. " * 3]
    return texts


@pytest.fixture
def home_with_models(tmp_path, monkeypatch, model_home):
    """A fresh MEDIAREC_HOME whose models/ is the shared model cache."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(model_home / "models", target_is_directory=True)
    monkeypatch.setenv("MEDIAREC_HOME", str(home))
    return home


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_rows_have_unit_length_and_dimension_384(embedder, item_texts):
    v = embedder.embed(item_texts)
    assert v.shape == (len(item_texts), DIMENSION) == (len(item_texts), 384)
    assert v.dtype == np.float32
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Different texts give different vectors (the model is really run, row by row).
    assert len({tuple(np.round(row, 4)) for row in v}) == len(set(item_texts))


def test_similar_texts_are_closer_than_unrelated_ones(embedder):
    triples = [
        ("a science fiction film about aliens attacking a spaceship crew",
         "space horror movie with an extraterrestrial monster",
         "a gentle romantic comedy about a wedding in Paris"),
        ("calm piano music for studying",
         "relaxing instrumental piano pieces to focus and concentrate",
         "loud aggressive heavy metal with screaming vocals"),
        ("Star Trek: First Contact (1996). movie. genres: Action, Adventure, Sci-Fi",
         "Star Trek: The Wrath of Khan (1982). movie. genres: Action, Adventure, Sci-Fi",
         "Sense and Sensibility (1995). movie. genres: Drama, Romance"),
    ]
    for anchor, near, far in triples:
        a, n, f = embedder.embed([anchor, near, far])
        assert cos(a, n) > cos(a, f) + 0.1, (anchor, cos(a, n), cos(a, f))


def test_dynamic_padding_is_batch_invariant(model_files, embedder, item_texts):
    """Sorting by length and padding each batch to its own longest text changes nothing: the same
    vectors (within 1e-4) as embedding one text at a time, for any batch size, in input order."""
    one_by_one = np.stack([embedder.embed([t])[0] for t in item_texts])
    for bs in (5, 64):
        e = MiniLMEmbeddingFunction(model_files["model"], model_files["tokenizer"], batch_size=bs)
        batched = e.embed(item_texts)
        assert np.abs(batched - one_by_one).max() < 1e-4, bs
    # A permuted input gives the permuted rows.
    perm = np.random.default_rng(0).permutation(len(item_texts))
    permuted = embedder.embed([item_texts[i] for i in perm])
    assert np.abs(permuted - one_by_one[perm]).max() < 1e-4


def test_dynamic_padding_matches_full_length_padding(embedder, item_texts):
    """Padding to max_length (what Chroma's default does) gives the same vectors: the mask does its job."""
    text = item_texts[0]
    enc = embedder.tokenizer.encode(text)
    width = embedder.max_length
    ids = np.zeros((1, width), np.int64)
    mask = np.zeros((1, width), np.int64)
    ids[0, :len(enc.ids)] = enc.ids
    mask[0, :len(enc.ids)] = 1
    hidden = embedder.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": np.zeros_like(ids)})[0]
    pooled = (hidden * mask[:, :, None]).sum(axis=1) / mask.sum()
    pooled /= np.linalg.norm(pooled)
    assert np.abs(pooled[0] - embedder.embed([text])[0]).max() < 1e-4


def test_empty_and_blank_strings_are_handled(embedder):
    assert embedder.embed([]).shape == (0, DIMENSION)
    v = embedder.embed(["", "   ", "Alien (1979)"])
    assert v.shape == (3, DIMENSION)
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # The real text next to empty ones is unaffected by them.
    assert np.abs(v[2] - embedder.embed(["Alien (1979)"])[0]).max() < 1e-4
    assert embedder([""])[0].shape == (DIMENSION,)


def test_long_text_is_truncated_not_rejected(embedder):
    long = "an epic space opera with starships, empires and rebels " * 200  # far above 256 tokens
    v = embedder.embed([long])
    assert v.shape == (1, DIMENSION) and np.isfinite(v).all()
    assert abs(float(np.linalg.norm(v[0])) - 1.0) < 1e-5
    assert len(embedder.tokenizer.encode(long).ids) == embedder.max_length


def test_chroma_protocol(embedder, home_with_models):
    out = embedder(["a film about space aliens", "calm piano music"])
    assert isinstance(out, list) and len(out) == 2
    assert all(np.asarray(row).shape == (DIMENSION,) for row in out)
    np.testing.assert_allclose(np.asarray(out), embedder.embed(["a film about space aliens", "calm piano music"]),
                               atol=1e-6)

    assert MiniLMEmbeddingFunction.name() == embedder.name() == "mediarec-minilm"
    assert known_embedding_functions["mediarec-minilm"] is MiniLMEmbeddingFunction
    assert embedder.default_space() == "cosine"
    assert "cosine" in embedder.supported_spaces()

    config = embedder.get_config()
    assert json.loads(json.dumps(config)) == config  # Chroma stores it as JSON
    rebuilt = MiniLMEmbeddingFunction.build_from_config(config)  # resolves the model under MEDIAREC_HOME
    assert isinstance(rebuilt, MiniLMEmbeddingFunction)
    assert rebuilt.get_config() == config
    texts = ["Alien (1979)", "Toy Story (1995)", ""]
    assert np.abs(rebuilt.embed(texts) - embedder.embed(texts)).max() < 1e-6


def test_chroma_rebuilds_the_function_from_a_persisted_collection(embedder, home_with_models, tmp_path):
    """A collection created with our function can be reopened by a new client without passing it:
    Chroma rebuilds it from the stored config and free-text queries use our model."""
    path = str(tmp_path / "chroma")
    docs = {"alien": "a science fiction film about aliens attacking a spaceship crew",
            "piano": "calm piano music for studying",
            "romcom": "a gentle romantic comedy about a wedding in Paris"}
    client = chromadb.PersistentClient(path=path)
    col = client.create_collection("ef-roundtrip", embedding_function=embedder,
                                   configuration={"hnsw": {"space": "cosine"}})
    col.add(ids=list(docs), documents=list(docs.values()))
    del col, client

    reopened = chromadb.PersistentClient(path=path).get_collection("ef-roundtrip")
    ef_conf = reopened.configuration_json["embedding_function"]
    assert ef_conf["name"] == "mediarec-minilm" and ef_conf["config"] == embedder.get_config()
    res = reopened.query(query_texts=["space horror movie with an extraterrestrial monster"], n_results=3,
                         include=["distances"])
    assert res["ids"][0][0] == "alien"
    q = embedder.embed(["space horror movie with an extraterrestrial monster"])[0]
    expected = {k: 1.0 - float(v @ q) for k, v in zip(docs, embedder.embed(list(docs.values())))}
    for i, d in zip(res["ids"][0], res["distances"][0]):
        assert d == pytest.approx(expected[i], abs=1e-4)


# -- the static embedder distilled from the same model (issue 30, Scale) ----------------------------
def test_distilled_token_vectors_are_the_models_own_output(embedder):
    """What the static embedding is distilled from: token t's vector is the transformer's mean-pooled
    output for ``[CLS] t [SEP]``, so normalised it equals embedding the word t alone."""
    words = ["alien", "piano", "comedy", "war"]
    ids = [embedder.tokenizer.token_to_id(w) for w in words]
    assert None not in ids
    v = embedder.token_vectors(ids, batch_size=3)  # two batches, the second smaller
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert np.abs(v - embedder.embed(words)).max() < 1e-5


@pytest.fixture(scope="module")
def static_embedder(model_home):
    """Distilled once into the persistent model cache (about a minute of CPU), then loaded from it."""
    from mediarec.index.embeddings import StaticEmbeddingFunction

    return StaticEmbeddingFunction(settings=Settings(home=model_home))


@pytest.mark.slow
def test_static_embedder_keeps_what_retrieval_needs(static_embedder, embedder, item_texts, model_home):
    from mediarec.index.embeddings import STATIC_SUFFIX, StaticEmbeddingFunction, make_embedder

    v = static_embedder.embed(item_texts + ["", "   "])
    assert v.shape == (len(item_texts) + 2, 256) and v.dtype == np.float32 and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # a text is the mean of its tokens' vectors: order-free, and batch-free
    assert np.abs(static_embedder.embed(["comedy war alien"]) - static_embedder.embed(["alien war comedy"])).max() < 1e-6
    assert np.abs(np.stack([static_embedder.embed([t])[0] for t in item_texts]) - v[:len(item_texts)]).max() < 1e-6
    # it ranks like the transformer on real titles: for each ml-100k text, the static nearest
    # neighbours overlap the transformer's (random: 10/44 of 10)
    real = item_texts[:40]
    s, m = static_embedder.embed(real), embedder.embed(real)
    top_s, top_m = (np.argsort(-(x @ x.T), axis=1)[:, 1:11] for x in (s, m))
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_s, top_m)])
    assert overlap > 0.5, overlap
    # the name picks it, and Chroma can rebuild it from its stored config
    assert isinstance(make_embedder("minilm-l6-int8" + STATIC_SUFFIX, Settings(home=model_home)), StaticEmbeddingFunction)
    assert known_embedding_functions["mediarec-static"] is StaticEmbeddingFunction
    with pytest.raises(ValueError):
        StaticEmbeddingFunction("minilm-l6-int8", settings=Settings(home=model_home))


@pytest.mark.slow
def test_changing_the_embedder_rebuilds_the_text_side(static_embedder, home_with_models, model_home, monkeypatch):
    """An index built with MiniLM and opened with the static embedder is rebuilt, never mixed: the
    text collection's fingerprint names the embedder, and every stored vector is the new one."""
    from mediarec.config import get_settings
    from mediarec.index.store import IndexBuilder, index_settings_for, make_client

    static = home_with_models / "models" / "minilm-l6-int8-static"
    if not static.exists():  # the home's models/ is the shared cache, distilled by the fixture
        pytest.fail(f"{static} missing")
    cat = load_dataset("demo")

    def build(embedder_name):
        monkeypatch.setenv("MEDIAREC_EMBEDDER", embedder_name)
        settings = get_settings(home=home_with_models)  # the composition root reads the environment once
        assert settings.embedder == embedder_name
        client = make_client(settings, cat.name)
        idx = IndexBuilder(cat, client, index_settings_for(cat, settings)).build()
        col = client.get_collection(f"{cat.name}-text")
        got = col.get(include=["embeddings"])
        return idx, col, np.asarray(got["embeddings"]), got["ids"]

    _, col_a, vec_a, _ = build("minilm-l6-int8")
    assert vec_a.shape[1] == DIMENSION
    _, col_b, vec_b, ids_b = build("minilm-l6-int8-static")
    assert col_a.metadata["fingerprint"] != col_b.metadata["fingerprint"]
    assert "minilm-l6-int8-static" in col_b.metadata["fingerprint"] and col_b.metadata["complete"]
    assert vec_b.shape == (len(cat.items), 256)  # every item re-embedded: no 384-d vector left
    expected = static_embedder.embed([cat.items[i].text() for i in ids_b])
    assert np.abs(vec_b - expected).max() < 1e-5


def test_the_function_chroma_rebuilds_from_its_config_loads_nothing_until_it_embeds(model_files):
    """Chroma rebuilds the embedding function from the stored config on every upsert (to read the
    collection's schema) and never embeds with it: building must not resolve the model or open an
    ONNX session (that was 0.5-1 s each, six times in one `index` of the demo)."""
    from mediarec.errors import ModelError

    unknown = MiniLMEmbeddingFunction.build_from_config({"model_name": "no-such-model", "max_length": 64})
    assert unknown.get_config() == {"model_name": "no-such-model", "max_length": 64}
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        unknown.embed(["Alien"])  # the error comes when it is used, and says what is missing
    lazy = MiniLMEmbeddingFunction(model_files["model"], model_files["tokenizer"])
    assert lazy._loaded is None
    first = lazy.embed(["Alien", "Toy Story"])
    assert lazy._loaded is not None and first.shape == (2, DIMENSION)
