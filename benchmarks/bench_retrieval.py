"""Indexing throughput and candidates() latency on MovieLens latest-small (issue: foundation).

    python benchmarks/bench_retrieval.py --data-dir ../shared/data

Text embedding of all 9,742 items into a fresh embedded Chroma store (items/s), the collaborative
vectors, then candidates(k=20) for 200 users (p50/p95 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import candidates_latency_ms, record  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--users", type=int, default=200)
    args = ap.parse_args()

    import chromadb

    from mediarec.catalog import load_dataset
    from mediarec.index.embeddings import MiniLMEmbeddingFunction
    from mediarec.index.store import IndexBuilder
    from mediarec.index.retriever import Retriever

    catalog = load_dataset("movielens-latest-small", args.data_dir)
    embedder = MiniLMEmbeddingFunction()
    with tempfile.TemporaryDirectory() as tmp:
        idx = IndexBuilder(catalog, chromadb.PersistentClient(tmp), embedder=embedder)
        t0 = time.perf_counter()
        idx._build_text(progress=False, rebuild=True)
        text_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        idx._build_collab(progress=False, rebuild=True)
        collab_s = time.perf_counter() - t0
        idx.load()
        texts = [it.text() for it in catalog.items.values()]
        t0 = time.perf_counter()
        embedder.embed(texts)
        embed_only_s = time.perf_counter() - t0
        retriever = Retriever(idx)
        users = catalog.users()[: args.users]
        lat = sorted(candidates_latency_ms(retriever, (catalog.history(u) for u in users), k=20))
    record("retrieval-ml-latest-small", {
        "items": len(catalog), "interactions": len(catalog.interactions),
        "text_index_seconds": round(text_s, 2), "text_index_items_per_s": round(len(catalog) / text_s, 1),
        "embedding_only_items_per_s": round(len(catalog) / embed_only_s, 1),
        "collab_index_seconds": round(collab_s, 2), "collab_items": len(idx.collab.item_ids),
        "candidates_users": len(users), "candidates_k": 20,
        "candidates_p50_ms": round(statistics.median(lat), 2),
        "candidates_p95_ms": round(lat[int(0.95 * (len(lat) - 1))], 2),
        "threads": os.cpu_count(),
    })


if __name__ == "__main__":
    main()
