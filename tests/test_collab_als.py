"""The large-catalog collaborative model (index/collab_als.py) on real MovieLens 100k ratings: chosen
by size, a vector for every item with interactions, a fold-in that is implicit's own user step and
ranks a user's items, and an index (real Chroma, real files) that saves and loads it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from conftest import make_home
from mediarec.catalog import load_dataset
from mediarec.config import Settings
from mediarec.index.collab import CollabModel, CollabSettings, item_sequences, modelled_items


@pytest.fixture(scope="module")
def ml100k(shared_data):
    return load_dataset("ml-100k", shared_data)


@pytest.fixture(scope="module")
def als(ml100k):
    """ALS from 1,000 items on, of the 1,600-odd rated films: "auto" must leave EASE for ALS."""
    return CollabModel.fit(ml100k, CollabSettings(max_items=300, als_from_items=1000, als_factors=32,
                                                  als_iterations=8))


def test_auto_chooses_als_past_max_items_and_every_item_gets_a_vector(ml100k, als):
    rated = {x.item for x in ml100k.positives}
    assert als.kind == "als" and als.matrix is None
    assert set(als.item_ids) == rated and len(rated) > 300
    assert als.item_vectors.shape == (len(rated), 32) and np.isfinite(als.item_vectors).all()
    assert np.linalg.norm(als.item_vectors, axis=1).min() > 0
    small = CollabModel.fit(ml100k, CollabSettings(max_items=300, rank=16))  # under als_from_items (20,000)
    assert small.kind == "ease" and small.matrix is not None and len(small.item_ids) == 300
    forced = CollabModel.fit(ml100k, CollabSettings(max_items=5000, model="ease", rank=16))
    assert forced.kind == "ease" and len(forced.item_ids) == len(rated)


def test_ease_settings_keep_the_fingerprint_they_had_before_als():
    """The new fields at their defaults are not in the key: existing indexes are not rebuilt."""
    import hashlib
    import json

    s = CollabSettings()
    old = {k: v for k, v in s.model_dump().items()
           if k not in ("model", "als_from_items", "als_factors", "als_regularization", "als_alpha", "als_iterations",
                        "strength")}
    assert s.key() == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert CollabSettings(model="als").key() != s.key() != CollabSettings(model="ease").key()
    assert CollabSettings(strength="log1p").key() != s.key()  # interaction strength, where used, is in it


def test_fold_in_is_implicits_user_step(ml100k, als):
    """Our numpy fold-in equals AlternatingLeastSquares.recalculate_user against the same factors."""
    from implicit.cpu.als import AlternatingLeastSquares

    s = als.settings
    ref = AlternatingLeastSquares(factors=s.als_factors, regularization=s.als_regularization, alpha=s.als_alpha)
    ref.item_factors = als.item_vectors.copy()
    hist = [x.item for x in ml100k.history(ml100k.users()[3]) if x.is_positive]
    cols = sorted({als.item_ids.index(i) for i in hist})
    row = sparse.csr_matrix((np.ones(len(cols), np.float32), ([0] * len(cols), cols)), shape=(1, len(als.item_ids)))
    expected = ref.recalculate_user(0, row)
    got = als.user_vector([als.item_ids[c] for c in cols], decay=1.0)  # no recency: implicit's weights
    assert np.allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_fold_in_ranks_held_out_co_consumed_items_above_random(ml100k, als):
    """From half of a user's history, the other half scores above the items they never rated."""
    rng = np.random.default_rng(0)
    wins = trials = 0
    for u in ml100k.users()[:100]:
        liked = list(dict.fromkeys(x.item for x in ml100k.history(u) if x.is_positive and x.item in als._pos))
        if len(liked) < 10:
            continue
        given, held = liked[::2], liked[1::2]
        scores = als.exact_scores(given)
        unseen = np.setdiff1d(np.arange(len(als.item_ids)), [als._pos[i] for i in liked])
        rand = rng.choice(unseen, len(held))
        wins += int((scores[[als._pos[i] for i in held]] > scores[rand]).sum())
        trials += len(held)
    assert trials > 500 and wins / trials > 0.8


def test_index_saves_and_loads_the_als_model(ml100k, tmp_path, model_home):
    """Built through the real index (Chroma + the matrix file), read back by a reader in another process state."""
    from mediarec.index.retriever import Retriever
    from mediarec.index.store import IndexSettings, open_index

    small = ml100k.replace(name="als-rt", interactions=ml100k.interactions[:20000])
    settings = Settings(home=make_home(tmp_path / "h", model_home))
    s = IndexSettings(collab=CollabSettings.for_catalog(small, use_tuned=False, max_items=200, als_from_items=500,
                                                        als_factors=16,
                                                        als_iterations=4))
    built = open_index(small, settings, index_settings=s)
    assert built.collab.kind == "als" and built.matrix_path.exists()
    read = open_index(small, settings, index_settings=s, build=False)
    assert read.collab.kind == "als" and read.collab.item_ids == built.collab.item_ids
    assert np.array_equal(read.collab.item_vectors, built.collab.item_vectors)
    assert len(read.collab.item_ids) == len(modelled_items(small, s.collab, cap=False)) > 200
    user = small.users()[0]
    cands = Retriever(read).candidates(small.history(user), k=10)
    assert len(cands) == 10 and any("collab" in c.sources for c in cands)
    assert len(item_sequences(small, read.collab.item_ids)) == len(small.users())
