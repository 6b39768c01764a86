"""Test-only: what one test session has computed, shared with the processes it starts.

The test run embeds each distinct text once and trains each learned model once (conftest.py); the
``mediarec`` processes that tests start (``index``, ``add``, background refits and retrains, kill -9
tests) used to compute them again, a learned model taking most of a minute each. Here both live in a
folder of the session's temporary directory (``TESTS_SHARED_CACHE_DIR``), and ``sitecustomize.py``
beside this file installs the same reuse in every child process. Real vectors and real models: a
model is trained for real the first time its fingerprint (what it depends on) is asked for, in
whichever process asks first; the folder goes with the session.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
import threading
from pathlib import Path

ENV = "TESTS_SHARED_CACHE_DIR"


def folder() -> Path | None:
    d = os.environ.get(ENV)
    return Path(d) if d else None


# -- learned models, one JSON file per fingerprint ----------------------------------------------
def learned_get(key: str) -> str | None:
    d = folder()
    p = d / "learned" / f"{key}.json" if d else None
    return p.read_text() if p is not None and p.is_file() else None


def learned_put(key: str, model_json: str) -> None:
    d = folder()
    if d is None:
        return
    out = d / "learned"
    out.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{key}-")
    with os.fdopen(fd, "w") as f:
        f.write(model_json)
    os.replace(tmp, out / f"{key}.json")  # whole or absent for a reader in another process


def train_once(original):
    """``mediarec.rank.learned.train`` that trains once per model fingerprint in the session (with a
    sequential model it is not keyed, and trains each time) and hands out a fresh copy."""
    from mediarec.rank import learned

    memo: dict[str, str] = {}

    def train(catalog, index, fusion=None, settings=None, progress=False, seq_source=None):
        if seq_source is not None:
            return original(catalog, index, fusion, settings, progress=progress, seq_source=seq_source)
        key = learned.fingerprint(catalog, index, fusion, settings or learned.LearnedSettings())
        if key not in memo:
            memo[key] = learned_get(key) or ""
            if not memo[key]:
                memo[key] = original(catalog, index, fusion, settings, progress=progress).to_json()
                learned_put(key, memo[key])
        return learned.LearnedRanker.from_json(memo[key])

    train.memo = memo
    return train


# -- text embeddings, one row per (model, length limit, text) -----------------------------------
def _db() -> sqlite3.Connection | None:
    d = folder()
    if d is None:
        return None
    d.mkdir(parents=True, exist_ok=True)
    # one connection per process, used from any thread (a served request embeds in a worker thread)
    con = sqlite3.connect(d / "embeddings.sqlite", timeout=60, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS v (k TEXT PRIMARY KEY, vec BLOB)")
    return con


def _key(model_path: str, max_length: int, text: str) -> str:
    return hashlib.sha256(f"{os.path.realpath(model_path)}|{max_length}|{text}".encode()).hexdigest()


def embed_once(original, enabled=lambda: True):
    """``MiniLMEmbeddingFunction.embed`` that embeds each distinct text once per session, across
    processes; ``enabled()`` false: the plain embedder (tests of the embedder itself)."""
    import numpy as np

    from mediarec.index.embeddings import DIMENSION

    memo: dict[str, np.ndarray] = {}
    con = [None]
    lock = threading.Lock()

    def embed(self, texts):
        texts = list(texts)
        if not enabled() or not texts:
            return original(self, texts)
        with lock:  # the connection and the memo, one thread at a time
            return _embed(self, texts)

    def _embed(self, texts):
        keys = {t: _key(self.model_path, self.max_length, t) for t in dict.fromkeys(texts)}
        missing = [t for t, k in keys.items() if k not in memo]
        if missing and con[0] is None:
            con[0] = _db()
        if missing and con[0] is not None:
            for t in missing:
                row = con[0].execute("SELECT vec FROM v WHERE k = ?", (keys[t],)).fetchone()
                if row is not None:
                    memo[keys[t]] = np.frombuffer(row[0], dtype=np.float32)
            missing = [t for t in missing if keys[t] not in memo]
        if missing:
            vecs = original(self, missing)
            for t, v in zip(missing, vecs):
                memo[keys[t]] = np.asarray(v, dtype=np.float32)
            if con[0] is not None:
                with con[0]:
                    con[0].executemany("INSERT OR IGNORE INTO v VALUES (?, ?)",
                                       [(keys[t], memo[keys[t]].tobytes()) for t in missing])
        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        for r, t in enumerate(texts):
            out[r] = memo[keys[t]]
        return out

    embed.memo = memo
    return embed
