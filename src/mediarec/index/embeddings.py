"""Text embeddings for Chroma from the pinned all-MiniLM-L6-v2 int8 ONNX model.

Chroma's default embedding function downloads a model at run time (impossible offline) and pads
every batch to 256 tokens. Ours runs the pinned ONNX file with dynamic padding: texts are sorted
by length and each batch is padded only to its own longest text, which is what makes indexing
a 10k-item catalog take seconds rather than minutes on two cores.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from mediarec.config import DEFAULT_EMBEDDER

EMBEDDER_NAME = DEFAULT_EMBEDDER
DIMENSION = 384


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Mean-pooled, L2-normalised MiniLM sentence embeddings (cosine = dot product)."""

    def __init__(self, model_path: str | Path | None = None, tokenizer_path: str | Path | None = None,
                 max_length: int = 256, batch_size: int = 32, threads: int | None = None,
                 model_name: str = EMBEDDER_NAME):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        if model_path is None or tokenizer_path is None:
            from mediarec.llm.weights import resolve

            files = resolve(model_name)
            model_path, tokenizer_path = files["model"], files["tokenizer"]
        self.model_name = model_name
        self.model_path, self.tokenizer_path = str(model_path), str(tokenizer_path)
        self.max_length, self.batch_size = max_length, batch_size
        self.tokenizer = Tokenizer.from_file(self.tokenizer_path)
        self.tokenizer.enable_truncation(max_length=max_length)
        self.tokenizer.no_padding()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or min(os.cpu_count() or 1, 8)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self.model_path, opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    # -- Chroma protocol ---------------------------------------------------------------------
    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embed(list(input)))

    @staticmethod
    def name() -> str:
        return "mediarec-minilm"

    def get_config(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_length": self.max_length}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "MiniLMEmbeddingFunction":
        return MiniLMEmbeddingFunction(model_name=config.get("model_name", EMBEDDER_NAME),
                                       max_length=config.get("max_length", 256))

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "ip", "l2"]

    # -- embedding ---------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings as a float32 array [len(texts), 384], rows of unit length."""
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch([t if t.strip() else "[UNK]" for t in texts])
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = [encodings[i] for i in idx]
            width = max(len(e.ids) for e in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for r, e in enumerate(batch):
                ids[r, :len(e.ids)] = e.ids
                mask[r, :len(e.ids)] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feeds)[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[idx] = pooled
        return out
