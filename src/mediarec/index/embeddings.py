"""Text embeddings for Chroma from the pinned all-MiniLM-L6-v2 int8 ONNX model, or a static
embedding distilled from it.

Chroma's default embedding function downloads a model at run time (impossible offline) and pads
every batch to 256 tokens. Ours runs the pinned ONNX file with dynamic padding: texts are sorted
by length and each batch is padded only to its own longest text, which is what makes indexing
a 10k-item catalog take seconds rather than minutes on two cores.

The transformer still costs about 10 ms of CPU an item of ~45 tokens (benchmarks/results/scale-*),
too much for a 100k catalog in 10 minutes on two cores. ``<base>-static`` (e.g.
``minilm-l6-int8-static``) is a model2vec static embedding distilled from the same ONNX model: one
vector per vocabulary token, the mean of a text's token vectors, hundreds of times cheaper
(docs/scaling.md has the measurements and its quality on the request benchmark).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from mediarec.config import DEFAULT_EMBEDDER

EMBEDDER_NAME = DEFAULT_EMBEDDER
DIMENSION = 384
STATIC_SUFFIX = "-static"


def make_embedder(name: str = EMBEDDER_NAME, settings: Any = None) -> "MiniLMEmbeddingFunction | StaticEmbeddingFunction":
    """The embedding function an index names: ``<base>-static`` is the static one distilled from ``base``."""
    if name.endswith(STATIC_SUFFIX):
        return StaticEmbeddingFunction(name, settings=settings)
    return MiniLMEmbeddingFunction(model_name=name)


class _UnitEmbeddings(EmbeddingFunction[Documents]):
    """What Chroma asks of both our embedding functions; ``embed`` gives unit rows (cosine = dot product)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, input: Documents) -> Embeddings:
        return list(self.embed(list(input)))

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "ip", "l2"]


@register_embedding_function
class MiniLMEmbeddingFunction(_UnitEmbeddings):
    """Mean-pooled, L2-normalised MiniLM sentence embeddings (cosine = dot product)."""

    def __init__(self, model_path: str | Path | None = None, tokenizer_path: str | Path | None = None,
                 max_length: int = 256, batch_size: int = 32, threads: int | None = None,
                 model_name: str = EMBEDDER_NAME):
        # Nothing is resolved or loaded here: Chroma rebuilds the function from its config on every
        # upsert (to read the collection's schema) and never embeds with that copy, and each ONNX
        # session cost 0.5-1 s (6 of them in one `index` of the demo). The first embed loads.
        self.model_name = model_name
        self._paths = (str(model_path), str(tokenizer_path)) if model_path is not None and tokenizer_path is not None \
            else None
        self.max_length, self.batch_size, self.threads = max_length, batch_size, threads
        self._loaded: tuple[Any, Any, set[str]] | None = None
        self._lock = threading.Lock()

    def _files(self) -> tuple[str, str]:
        if self._paths is None:
            from mediarec.llm.weights import resolve

            files = resolve(self.model_name)
            self._paths = (str(files["model"]), str(files["tokenizer"]))
        return self._paths

    @property
    def model_path(self) -> str:
        return self._files()[0]

    @property
    def tokenizer_path(self) -> str:
        return self._files()[1]

    def _load(self) -> tuple[Any, Any, set[str]]:
        """(tokenizer, ONNX session, its input names), made once, by whichever thread asks first."""
        if self._loaded is not None:  # every embed batch asks: no lock once loaded
            return self._loaded
        with self._lock:
            if self._loaded is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                tokenizer = Tokenizer.from_file(self.tokenizer_path)
                tokenizer.enable_truncation(max_length=self.max_length)
                tokenizer.no_padding()
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads or min(os.cpu_count() or 1, 8)
                opts.inter_op_num_threads = 1
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                session = ort.InferenceSession(self.model_path, opts, providers=["CPUExecutionProvider"])
                self._loaded = (tokenizer, session, {i.name for i in session.get_inputs()})
            return self._loaded

    @property
    def tokenizer(self) -> Any:
        return self._load()[0]

    @property
    def session(self) -> Any:
        return self._load()[1]

    @property
    def _inputs(self) -> set[str]:
        return self._load()[2]

    # -- Chroma protocol ---------------------------------------------------------------------
    @staticmethod
    def name() -> str:
        return "mediarec-minilm"

    def get_config(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_length": self.max_length}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "MiniLMEmbeddingFunction":
        return MiniLMEmbeddingFunction(model_name=config.get("model_name", EMBEDDER_NAME),
                                       max_length=config.get("max_length", 256))

    # -- embedding ---------------------------------------------------------------------------
    def token_vectors(self, ids: Sequence[int], batch_size: int = 512) -> np.ndarray:
        """The mean-pooled output for ``[CLS] t [SEP]``, for each token id t (not normalised): what
        a static embedding is distilled from (model2vec's mean pooling, over all three positions)."""
        cls_id, sep_id = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), DIMENSION), dtype=np.float32)
        for start in range(0, len(ids), batch_size):
            part = ids[start:start + batch_size]
            batch = np.stack([np.full_like(part, cls_id), part, np.full_like(part, sep_id)], axis=1)
            feeds = {"input_ids": batch, "attention_mask": np.ones_like(batch)}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(batch)
            out[start:start + len(part)] = self.session.run(None, feeds)[0].mean(axis=1)
        return out

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


def _pca(x: np.ndarray, dims: int) -> np.ndarray:
    """model2vec.distill's PCA: centre, project on the top ``dims`` eigenvectors, signs fixed."""
    xc = x - x.mean(axis=0)
    _, vecs = np.linalg.eigh((xc.T @ xc) / (len(x) - 1))
    scores = xc @ vecs[:, ::-1][:, :dims]
    return scores * np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(scores.shape[1])])


def _sif_weights(n: int, sif: float) -> np.ndarray:
    """model2vec.distill's SIF weights, token frequency estimated by Zipf's law on the token rank."""
    proba = 1 / np.arange(2, n + 2)
    proba /= proba.sum()
    return sif / (sif + proba)


def _model2vec():
    try:
        import model2vec
    except ImportError:
        from mediarec.errors import ConfigError

        raise ConfigError("the static embedder needs model2vec: pip install 'model2vec>=0.10'") from None
    return model2vec


@register_embedding_function
class StaticEmbeddingFunction(_UnitEmbeddings):
    """A model2vec static embedding distilled from the MiniLM ONNX model (cosine = dot product).

    Distilled on first use (about a minute of CPU: one forward pass of ``[CLS] token [SEP]`` for each
    of the 30,522 vocabulary tokens, as ``model2vec.distill`` does) and kept under
    ``$MEDIAREC_HOME/models/<name>``. ``model2vec.distill`` itself cannot run here: it wants the
    model's torch weights (the registry has only the ONNX file) and its ``distill`` extra pins
    transformers<5.4, below this project's. So the forward pass and its two post-steps (PCA, SIF
    weighting, as model2vec.distill does them) are ours; model2vec's ``StaticModel`` stores, loads
    and encodes."""

    def __init__(self, model_name: str = EMBEDDER_NAME + STATIC_SUFFIX, settings: Any = None,
                 folder: str | Path | None = None, pca_dims: int = 256):
        if not model_name.endswith(STATIC_SUFFIX):
            raise ValueError(f"a static embedder's name ends with {STATIC_SUFFIX!r}: {model_name!r}")
        from mediarec.config import get_settings

        self.model_name, self.pca_dims = model_name, pca_dims
        self._settings = settings
        self.folder = Path(folder) if folder is not None else (settings or get_settings()).models_dir / model_name
        self._model: Any = None  # distilled or loaded on first use (see MiniLMEmbeddingFunction.__init__)
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                if not (self.folder / "model.safetensors").exists():
                    self._distill(self._settings)
                self._model = _model2vec().StaticModel.from_pretrained(str(self.folder))
            return self._model

    def _distill(self, settings: Any) -> None:
        import tempfile

        from tokenizers import Tokenizer

        base = MiniLMEmbeddingFunction(model_name=self.model_name[:-len(STATIC_SUFFIX)])
        tokenizer = Tokenizer.from_file(base.tokenizer_path)
        vectors = base.token_vectors(range(tokenizer.get_vocab_size()))
        vectors = _pca(vectors, self.pca_dims) * _sif_weights(len(vectors), 1e-4)[:, None]
        model = _model2vec().StaticModel(vectors=vectors.astype(np.float32), tokenizer=tokenizer, normalize=True,
                                         config={"base_model": base.model_name, "pca_dims": self.pca_dims,
                                                 "sif_coefficient": 1e-4, "pooling": "mean"})
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}-", dir=self.folder.parent))
        model.save_pretrained(str(tmp))
        try:
            tmp.rename(self.folder)  # atomic: a second process distilling at once keeps the first's
        except OSError:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

    # -- Chroma protocol ---------------------------------------------------------------------
    @staticmethod
    def name() -> str:
        return "mediarec-static"

    def get_config(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> "StaticEmbeddingFunction":
        return StaticEmbeddingFunction(config.get("model_name", EMBEDDER_NAME + STATIC_SUFFIX))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings as a float32 array [len(texts), pca_dims], rows of unit length (a text with no
        known token embeds as [UNK], as the transformer path does)."""
        if not texts:
            return np.zeros((0, self.model.dim), dtype=np.float32)
        out = np.asarray(self.model.encode([t if t.strip() else "[UNK]" for t in texts]), dtype=np.float32)
        empty = ~np.any(out, axis=1)
        if empty.any():  # model2vec drops [UNK] tokens: give such texts the [UNK] token's own vector
            unk = self.model.embedding[self.model.tokenizer.token_to_id("[UNK]")].astype(np.float32)
            out[empty] = unk / max(float(np.linalg.norm(unk)), 1e-12)
        return out
