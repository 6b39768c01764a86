"""The Chroma index of a catalogue: real embedder, real embedded Chroma, real MovieLens 100k."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402

from mediarec.llm import weights as models  # noqa: E402
from mediarec.catalog.model import Catalog  # noqa: E402
from mediarec.config import Settings  # noqa: E402
from mediarec.catalog import load_dataset  # noqa: E402
from mediarec.index.embeddings import EMBEDDER_NAME, MiniLMEmbeddingFunction  # noqa: E402
from mediarec.errors import IndexError_  # noqa: E402
from mediarec.index.store import CatalogIndex, IndexBuilder, IndexSettings, interactions_fingerprint, item_hash, open_index  # noqa: E402
from conftest import first_items  # noqa: E402


class CountingEmbedder(MiniLMEmbeddingFunction):
    """The real embedder, counting how often and how much it embeds; optionally interrupted
    (KeyboardInterrupt, as Ctrl-C would) at its ``interrupt_at``-th call."""

    def __init__(self, *args, interrupt_at: int | None = None, **kw):
        super().__init__(*args, **kw)
        self.calls = 0
        self.texts = 0
        self.interrupt_at = interrupt_at

    def embed(self, texts):
        self.calls += 1
        if self.interrupt_at is not None and self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        self.texts += len(texts)
        return super().embed(texts)


@pytest.fixture(scope="module")
def model_files(model_home):
    return models.resolve(EMBEDDER_NAME, Settings(home=model_home), quiet=True)


@pytest.fixture
def counting(model_files):
    def make(**kw) -> CountingEmbedder:
        return CountingEmbedder(model_files["model"], model_files["tokenizer"], **kw)
    return make


@pytest.fixture(scope="module")
def small(ml100k) -> Catalog:
    """The first 130 movies of ml-100k with their ratings: quick to embed, still real."""
    return first_items(ml100k, 130, "ml-small")


@pytest.fixture(scope="module")
def built(ml100k, model_files, tmp_path_factory):
    """ml-100k built once into an embedded Chroma under a temporary folder."""
    path = tmp_path_factory.mktemp("ml100k-index")
    emb = CountingEmbedder(model_files["model"], model_files["tokenizer"])
    client = chromadb.PersistentClient(path=str(path))
    idx = IndexBuilder(ml100k, client, embedder=emb).build()
    return idx, client, path, emb


def _meta(client, name):
    return client.get_collection(name).metadata or {}


def test_build_creates_three_collections_with_fingerprints(built, ml100k):
    idx, client, _, emb = built
    item_col, query_col = idx._collab_names()
    names = sorted(c.name for c in client.list_collections())
    assert names == sorted([item_col, query_col, "movielens-100k-text"])
    assert item_col == f"movielens-100k-cb{idx.collab_generation()}" and query_col.startswith("movielens-100k-cq")

    modelled = {x.item for x in ml100k.interactions}
    assert client.get_collection("movielens-100k-text").count() == len(ml100k.items) == 1682
    assert client.get_collection(item_col).count() == len(modelled)
    assert client.get_collection(query_col).count() == len(modelled)
    assert set(idx.collab.item_ids) == modelled

    text_meta = _meta(client, "movielens-100k-text")
    assert text_meta["complete"] is True
    assert text_meta["fingerprint"] == idx.text_space()
    assert EMBEDDER_NAME in text_meta["fingerprint"]
    stored = client.get_collection("movielens-100k-text").get(ids=["1", "50"], include=["metadatas"])
    assert [m["h"] for m in stored["metadatas"]] == [item_hash(ml100k.items[i], 1000) for i in stored["ids"]]
    for name in (item_col, query_col):
        meta = _meta(client, name)
        assert meta["complete"] is True
        assert meta["fingerprint"] == idx.collab_fingerprint()
        assert interactions_fingerprint(ml100k)[:24] in meta["fingerprint"]
    assert idx.is_current()

    # Every item was embedded exactly once, and what is stored is the embedding of its text.
    assert emb.texts == len(ml100k.items)
    assert idx.text_vectors.shape == (1682, 384)
    sample = ["1", "50", "1682"]
    expected = emb.embed([ml100k.items[i].text() for i in sample])
    got = idx.text_vectors[[idx.position(i) for i in sample]]
    assert np.abs(got - expected).max() < 1e-5
    stored = client.get_collection("movielens-100k-text").get(ids=["50"], include=["metadatas"])
    assert stored["metadatas"][0]["title"] == ml100k.items["50"].title
    assert stored["metadatas"][0]["year"] == 1977


def test_second_build_is_a_noop(built, ml100k, counting):
    _, client, _, _ = built
    before = {c.name: (c.id, c.count()) for c in client.list_collections()}
    emb = counting()
    idx = IndexBuilder(ml100k, client, embedder=emb).build()
    assert emb.calls == 0  # nothing re-embedded
    assert {c.name: (c.id, c.count()) for c in client.list_collections()} == before  # nothing recreated
    assert idx.is_current() and idx.text_vectors.shape == (1682, 384)


def test_index_persists_for_a_new_client(built, ml100k):
    idx, _, path, _ = built
    reopened = IndexBuilder(ml100k, chromadb.PersistentClient(path=str(path))).load()
    assert np.array_equal(reopened.text_vectors, idx.text_vectors)
    assert reopened.collab.item_ids == idx.collab.item_ids
    assert np.allclose(reopened.collab.item_vectors, idx.collab.item_vectors, atol=1e-6)
    assert np.allclose(reopened.collab.query_vectors, idx.collab.query_vectors, atol=1e-6)


def test_load_of_a_missing_index_says_how_to_build_it(ml100k, tmp_path, counting):
    client = chromadb.PersistentClient(path=str(tmp_path / "empty"))
    with pytest.raises(IndexError_, match=r"mediarec index --dataset movielens-100k"):
        IndexBuilder(ml100k, client).load()
    emb = counting()
    with pytest.raises(IndexError_, match=r"`mediarec index"):
        open_index(ml100k, Settings(home=tmp_path / "home"), build=False, embedder=emb)
    assert emb.calls == 0


def test_open_index_builds_under_mediarec_home(small, tmp_path, counting):
    home = tmp_path / "home"
    emb = counting()
    idx = open_index(small, Settings(home=home), embedder=emb)
    assert (home / "index" / "ml-small" / "chroma.sqlite3").is_file()
    assert idx.is_current() and emb.texts == len(small.items)
    emb2 = counting()
    again = open_index(small, Settings(home=home), build=False, embedder=emb2)
    assert np.array_equal(again.text_vectors, idx.text_vectors) and emb2.calls == 0


def test_changed_items_are_embedded_again_alone(small, tmp_path, counting):
    client = chromadb.PersistentClient(path=str(tmp_path / "idx"))
    first = IndexBuilder(small, client, embedder=counting()).build()
    old_h = client.get_collection("ml-small-text").get(ids=["50"], include=["metadatas"])["metadatas"][0]["h"]
    collab_fp = _meta(client, first._collab_names()[0])["fingerprint"]

    edited_item = small.items["50"].model_copy(update={"title": "Star Wars: A New Hope"})
    edited = Catalog("ml-small", [edited_item if i == "50" else it for i, it in small.items.items()],
                     small.interactions)
    assert edited.items_fingerprint() != small.items_fingerprint()

    emb = counting()
    with pytest.raises(IndexError_, match=r"stale.*mediarec index --dataset ml-small"):
        IndexBuilder(edited, client, embedder=emb).build(rebuild=False)
    assert emb.calls == 0
    with pytest.raises(IndexError_, match="stale"):
        IndexBuilder(edited, client, embedder=emb).load()

    idx = IndexBuilder(edited, client, embedder=emb).build()  # rebuild=True by default
    assert emb.texts == 1 and idx.embedded == 1  # the edited item alone
    assert not idx.collab_refit and _meta(client, idx._collab_names()[0])["fingerprint"] == collab_fp
    stored = client.get_collection("ml-small-text").get(ids=["50"], include=["metadatas", "embeddings"])
    assert stored["metadatas"][0]["title"] == "Star Wars: A New Hope" and stored["metadatas"][0]["h"] != old_h
    assert np.abs(np.asarray(stored["embeddings"][0]) - emb.embed([edited_item.text()])[0]).max() < 1e-5
    assert client.get_collection("ml-small-text").count() == len(edited.items)
    # The old catalogue's index is now the stale one.
    assert not IndexBuilder(small, client).is_current()


def test_a_built_index_is_read_only_and_a_grown_one_is_built_beside_it(small, tmp_path, counting):
    """IndexBuilder builds; the CatalogIndex it hands out is a snapshot nothing can change, and a
    build for a grown catalog (``builder(grown)``) reuses its vectors without touching it."""
    client = chromadb.PersistentClient(path=str(tmp_path / "idx"))
    built = IndexBuilder(small, client, embedder=counting()).build()
    assert isinstance(built, CatalogIndex) and not isinstance(built, IndexBuilder)
    for field, value in (("text_vectors", None), ("collab", None), ("catalog", small), ("previous", built)):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(built, field, value)
    assert not hasattr(built, "build") and not hasattr(built, "prune")
    vectors = built.text_vectors.copy()
    extra = next(it for it in small.items.values()).model_copy(update={"id": "new-1", "title": "A New Film"})
    grown = small.extend(items=[extra])
    emb = counting()
    builder = IndexBuilder(grown, client, embedder=emb, previous=built)
    assert builder.previous is built
    bigger = builder.build(prune=False)
    assert emb.texts == 1 and bigger.embedded == 1 and len(bigger.item_ids) == len(built.item_ids) + 1
    assert np.array_equal(built.text_vectors, vectors) and built.catalog is small  # the served one is as it was
    assert np.array_equal(bigger.text_vectors[: len(vectors)], vectors)
    assert built.builder(grown).previous is built  # the update path builds the same way


def test_changed_interactions_rebuild_collab_only(small, tmp_path, counting):
    client = chromadb.PersistentClient(path=str(tmp_path / "idx"))
    first = IndexBuilder(small, client, embedder=counting()).build()
    text_id = client.get_collection("ml-small-text").id
    fewer = small.replace(interactions=small.interactions[: len(small.interactions) // 2])

    emb = counting()
    idx = IndexBuilder(fewer, client, embedder=emb).build()
    assert emb.calls == 0  # the text side depends on the items only
    assert client.get_collection("ml-small-text").id == text_id
    assert idx._collab_names() != first._collab_names()
    assert _meta(client, idx._collab_names()[0])["fingerprint"] == idx.collab_fingerprint() != first.collab_fingerprint()
    assert client.get_collection(idx._collab_names()[0]).count() == len({x.item for x in fewer.interactions})
    assert idx.is_current() and not first.is_current()  # the build pruned the previous fit
    assert first._collab_names()[0] not in {c.name for c in client.list_collections()}


def test_interrupted_text_build_resumes_where_it_stopped(small, tmp_path, counting):
    settings = IndexSettings(batch_size=40)  # 130 items: batches of 40, 40, 40, 10
    client = chromadb.PersistentClient(path=str(tmp_path / "idx"))

    interrupted = counting(interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        IndexBuilder(small, client, settings, embedder=interrupted).build()
    text = client.get_collection("ml-small-text")
    assert text.count() == 40  # the first batch was stored
    assert (text.metadata or {}).get("complete") is False
    assert not IndexBuilder(small, client, settings).is_current()
    with pytest.raises(IndexError_, match="incomplete"):
        IndexBuilder(small, client, settings).load()

    resumed = counting()
    idx = IndexBuilder(small, client, settings, embedder=resumed).build()
    assert resumed.texts == len(small.items) - 40  # only the rest
    assert resumed.calls == 3
    assert client.get_collection("ml-small-text").count() == len(small.items)
    assert _meta(client, "ml-small-text")["complete"] is True
    assert idx.is_current()
    # Resumed vectors are those of a from-scratch build, each in its place.
    fresh = resumed.embed([it.text() for it in small.items.values()])
    assert np.abs(idx.text_vectors - fresh).max() < 1e-5

    again = counting()
    IndexBuilder(small, client, settings, embedder=again).build()
    assert again.calls == 0


def test_a_reader_waits_for_a_running_build(linked_home, caplog):
    """open_index(build=False) takes the lock shared: it waits for a builder instead of reading half an index."""
    import logging
    import threading

    from mediarec.config import get_settings
    from mediarec.index.store import build_lock, open_index

    demo = load_dataset("demo")
    open_index(demo, build=True)
    got = []
    caplog.set_level(logging.WARNING, logger="mediarec.index.store")
    with build_lock(get_settings(), "demo"):
        t = threading.Thread(target=lambda: got.append(open_index(demo, build=False)), daemon=True)
        t.start()
        t.join(1.5)  # long enough to have opened an unlocked index many times over
        assert not got  # waiting on the builder's lock
    t.join(120)
    assert got and got[0].text_vectors.shape[0] == len(demo.items)
    assert any("building the index of demo; waiting" in r.getMessage() for r in caplog.records)
    # two readers at once do not wait for each other
    with build_lock(get_settings(), "demo", shared=True):
        assert open_index(demo, build=False).text_vectors is not None


def test_a_whole_collection_is_read_in_pages_past_sqlites_variable_limit(tmp_path):
    """Opening the index of a 100,000-item catalog failed: one unpaged ``get`` of its metadata
    needs more SQL variables than SQLite allows (found by benchmarks/bench_scale.py). 40,000
    entries pass that limit; every id comes back once, with its own metadata and vector."""
    from mediarec.index.store import get_all

    col = chromadb.PersistentClient(path=str(tmp_path)).create_collection("big-test", metadata={"hnsw:space": "ip"})
    n = 40_000
    ids = [f"i{k}" for k in range(n)]
    vecs = np.stack([np.arange(n), -np.arange(n)], axis=1).astype(np.float32)
    for s in range(0, n, 5000):
        col.add(ids=ids[s:s + 5000], embeddings=vecs[s:s + 5000].tolist(),
                metadatas=[{"h": f"h{k}"} for k in range(s, min(s + 5000, n))])
    got = get_all(col, ["metadatas", "embeddings"])
    assert len(got["ids"]) == n and set(got["ids"]) == set(ids)
    for i, m, v in zip(got["ids"], got["metadatas"], got["embeddings"]):
        k = int(i[1:])
        assert m["h"] == f"h{k}" and float(v[0]) == k and float(v[1]) == -k
    assert get_all(col, [], page=15_000)["ids"] == got["ids"]  # pages of 15,000, 15,000 and a short 10,000
