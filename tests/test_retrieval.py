"""Candidate retrieval over a real index of MovieLens 100k (real embedder, embedded Chroma).

The index is built from a leave-last-out training split (each user's newest interaction held out),
which also serves the quality check at the end.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import chromadb  # noqa: E402

from mediarec.catalog.model import Catalog, Interaction, Item  # noqa: E402
from mediarec.catalog import load_dataset  # noqa: E402
from mediarec.errors import MediarecError, UnknownItemError  # noqa: E402
from mediarec.index.store import IndexBuilder  # noqa: E402
from mediarec.index.retriever import Retriever  # noqa: E402

SCI_FI_HORROR = {"Sci-Fi", "Horror"}


@pytest.fixture(scope="module")
def split(ml100k):
    """(train catalogue, {user: held-out last interaction})."""
    last = {u: h[-1] for u, h in ml100k.by_user.items()}
    held = {id(x) for x in last.values()}
    train = ml100k.replace(interactions=[x for x in ml100k.interactions if id(x) not in held])
    return train, last


@pytest.fixture(scope="module")
def retriever(split, embedder, tmp_path_factory) -> Retriever:
    train, _ = split
    client = chromadb.PersistentClient(path=str(tmp_path_factory.mktemp("retrieval-index")))
    # through Chroma's HNSW: a catalogue this small is otherwise searched in memory (below)
    return Retriever(IndexBuilder(train, client, embedder=embedder).build(), exact_search_max_items=0)


def _top(retriever: Retriever, scores: np.ndarray, k: int) -> list[str]:
    return [retriever.index.item_ids[j] for j in np.argsort(-scores, kind="stable")[:k]]


def test_candidates_are_k_unseen_items_best_first_with_per_source_scores(retriever, split):
    train, _ = split
    history = train.history("1")
    seen = {x.item for x in history}
    cands = retriever.candidates(history, k=20)
    assert len(cands) == 20
    ids = [c.item.id for c in cands]
    assert len(set(ids)) == 20
    assert not seen & set(ids)
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True)
    for c in cands:
        assert c.sources and set(c.sources) <= {"collab", "text"}
        assert c.collab_score is not None and c.text_score is not None
        assert -1.0 <= c.text_score <= 1.0
    assert any("collab" in c.sources for c in cands)
    # The fused score is the documented weighted sum of the two normalised sides.
    s_all = retriever.score_all(history)
    for c in cands[:5]:
        assert c.score == pytest.approx(float(s_all[retriever.index.position(c.item.id)]), abs=1e-6)


def test_exclude_removes_items_and_keeps_k(retriever, split):
    train, _ = split
    history = train.history("1")
    first = retriever.candidates(history, k=10)
    banned = [c.item.id for c in first[:5]]
    second = retriever.candidates(history, k=10, exclude=banned)
    ids = [c.item.id for c in second]
    assert len(ids) == 10 and not set(banned) & set(ids)
    assert ids[:5] == [c.item.id for c in first[5:10]]  # the rest move up, in order


def test_history_forms_are_equivalent(retriever, ml100k):
    by_title = retriever.candidates(["Toy Story", "Star Wars (1977)", "Fargo"], k=10)
    by_id = retriever.candidates(["1", "50", "100"], k=10)
    by_item = retriever.candidates([ml100k.items[i] for i in ("1", "50", "100")], k=10)
    assert [c.item.id for c in by_title] == [c.item.id for c in by_id] == [c.item.id for c in by_item]
    assert not {"1", "50", "100"} & {c.item.id for c in by_title}


def test_free_text_query_brings_matching_items(retriever):
    cands = retriever.candidates([], k=10, query="space alien horror")
    assert len(cands) == 10
    matching = [c for c in cands if SCI_FI_HORROR & set(c.item.genres)]
    assert len(matching) >= 7, [(c.item.label, c.item.genres) for c in cands]
    assert SCI_FI_HORROR <= set(cands[0].item.genres)  # the best hit is both (Alien and its sequels)
    assert all(c.sources == ("text",) and c.collab_score is None for c in cands)


def test_request_leads_over_a_history(retriever):
    """retrieval.candidates says a request should let the text side lead: a comedy fan asking for
    "space alien horror" should get mostly sci-fi/horror, starting with one."""
    history = ["Toy Story", "Groundhog Day", "Clueless", "The Birdcage", "Mrs. Doubtfire"]
    asked = retriever.candidates(history, k=10, query="space alien horror")
    assert SCI_FI_HORROR & set(asked[0].item.genres), asked[0].item.label
    assert sum(bool(SCI_FI_HORROR & set(c.item.genres)) for c in asked) >= 6


def test_item_without_interactions_is_retrievable_through_text(ml100k, embedder, tmp_path):
    ids = list(ml100k.items)[:200]
    keep = set(ids)
    new = Item(id="new-1", title="Nebula Stalker", year=2024, genres=("Horror", "Sci-Fi"),
               description="A crew aboard a deep-space freighter is hunted by a shape-shifting alien predator.")
    catalog = Catalog("ml-plus-new", [ml100k.items[i] for i in ids] + [new],
                      [x for x in ml100k.interactions if x.item in keep])
    client = chromadb.PersistentClient(path=str(tmp_path / "idx"))
    r = Retriever(IndexBuilder(catalog, client, embedder=embedder).build())
    assert "new-1" not in r.index.collab.item_ids  # no collaborative vector

    top = r.candidates([], k=5, query="space alien horror")
    hit = next((c for c in top if c.item.id == "new-1"), None)
    assert hit is not None, [c.item.label for c in top]
    assert "text" in hit.sources

    # A request that describes it finds it first.
    best = r.candidates([], k=3, query="a deep-space freighter crew hunted by a shape-shifting alien")[0]
    assert best.item.id == "new-1" and best.collab_score is None

    # From a history it gets a text score and no collaborative one.
    history = ["Alien", "Aliens", "Star Wars (1977)"]
    pos = r.index.position("new-1")
    fused = r.score_all(history)
    assert np.isfinite(fused[pos]) and fused[pos] > 0
    assert r.score_all(history, sides=("collab",))[pos] == 0.0
    assert r.score_all(history, sides=("text",))[pos] == pytest.approx(fused[pos])


def test_score_all_agrees_with_candidates(retriever, split):
    """candidates() asks Chroma (approximate HNSW) for a pool and re-scores it exactly; score_all()
    scores everything exactly. They agree on the top items for (almost) every user."""
    train, _ = split
    users = train.users()[::9]
    same_top5 = 0
    for u in users:
        history = train.history(u)
        seen = {x.item for x in history}
        scores = retriever.score_all(history)
        assert np.isneginf(scores).sum() == len(seen)
        assert np.isneginf(scores[[retriever.index.position(i) for i in seen]]).all()
        full = _top(retriever, scores, 10)
        cands = [c.item.id for c in retriever.candidates(history, k=10)]
        same_top5 += set(cands[:5]) == set(full[:5])
        assert len(set(cands) & set(full)) >= 7, u
        assert cands[0] in full[:3], u
    assert same_top5 >= 0.95 * len(users), (same_top5, len(users))


def test_in_memory_search_returns_what_chroma_returns(retriever, split):
    """A small catalogue's nearest items are found in memory (index/retriever.py,
    EXACT_SEARCH_MAX_ITEMS): the same candidates, in the same order with the same scores, as
    through Chroma's collections, with and without a request (a filter, a text query, a dislike)."""
    from mediarec.rank.request import parse_request

    train, _ = split
    in_memory = Retriever(retriever.index)
    assert in_memory.exact_search and not retriever.exact_search
    requests = [None, "a comedy from the 90s", "no horror please", "something like Star Wars but older"]
    compared = 0
    for n, u in enumerate(train.users()[::7]):
        history = train.history(u)
        text = requests[n % len(requests)]
        c = parse_request(text, train) if text else None
        q = c.text_query() if c else None
        via_chroma = retriever.candidates(history, k=50, query=q, constraints=c)
        in_mem = in_memory.candidates(history, k=50, query=q, constraints=c)
        assert [(x.item.id, x.score, x.sources) for x in in_mem] == \
            [(x.item.id, x.score, x.sources) for x in via_chroma], (u, text)
        compared += 1
    disliked = [*train.history("1")[:20], Interaction(user="1", item=train.history("1")[20].item, event="dislike")]
    assert [x.item.id for x in in_memory.candidates(disliked, k=20)] == \
        [x.item.id for x in retriever.candidates(disliked, k=20)]
    assert compared >= 130


def test_unknown_title_raises(retriever):
    with pytest.raises(UnknownItemError, match="No Such Film Xyzzy"):
        retriever.candidates(["Toy Story", "No Such Film Xyzzy"], k=5)
    with pytest.raises(UnknownItemError):
        retriever.score_all(["No Such Film Xyzzy"])


def test_empty_history_without_query_is_an_error(retriever):
    with pytest.raises(MediarecError, match="nothing to recommend"):
        retriever.candidates([], k=5)
    with pytest.raises(MediarecError, match="nothing to recommend"):
        retriever.candidates([], k=5, query="   ")


def test_demo_catalog_answers_a_music_request(embedder, tmp_path):
    demo = load_dataset("demo")  # ships in the package: a missing demo fails here, it is not skipped
    client = chromadb.PersistentClient(path=str(tmp_path / "idx"))
    r = Retriever(IndexBuilder(demo, client, embedder=embedder).build())
    top = r.candidates([], k=5, query="calm piano music for studying")
    assert len(top) == 5
    musical = [c for c in top if c.item.kind in ("track", "album", "artist")]
    assert len(musical) >= 3, [(c.item.label, c.item.kind) for c in top]
    words = " ".join(" ".join((c.item.title, c.item.description, *c.item.genres, *c.item.tags)).lower()
                     for c in top[:3])
    assert any(w in words for w in ("piano", "calm", "ambient", "classical", "study", "relax")), words


def test_collaborative_quality_leave_last_out(retriever, split):
    """HR@10 and NDCG@10 of the collaborative side over all 943 users of ml-100k, full ranking of
    unseen items (the issue's quality bar; the recorded numbers are about 0.21 / 0.114)."""
    train, last = split
    assert len(last) == 943
    hits, ndcg = 0, 0.0
    for user, target in last.items():
        scores = retriever.score_all(train.history(user), sides=("collab",))
        t = scores[retriever.index.position(target.item)]
        assert np.isfinite(t)  # the held-out item was not in the training history
        # Rank among unseen items, ties counted against the target.
        rank = 1 + int(np.sum(scores > t)) + int(np.sum(scores == t)) - 1
        if rank <= 10:
            hits += 1
            ndcg += 1.0 / np.log2(rank + 1)
    hr, ndcg = hits / len(last), ndcg / len(last)
    print(f"leave-last-out ml-100k collab: HR@10={hr:.4f} NDCG@10={ndcg:.4f}")
    assert hr >= 0.15, hr
    assert ndcg >= 0.08, ndcg
