"""PEFT LoRA weights -> a GGUF LoRA adapter that llama.cpp loads (``Llama(lora_path=...)``).

The format is the one llama.cpp's ``convert_lora_to_gguf.py`` writes (general.type "adapter",
adapter.type "lora", adapter.lora.alpha; ``<base tensor>.lora_a`` of shape (r, in) and
``.lora_b`` of shape (out, r)). That script needs the base model's Hugging Face config directory
and the llama.cpp source tree, neither of which a GGUF-only install has; our adapters only touch
attention projections, so the mapping is short and written here with the ``gguf`` library.

One subtlety: for llama-architecture models the GGUF stores q/k projections with rows permuted
for its rope layout, and transformers un-permutes them on load; the LoRA's B matrix (rows =
output features) of q_proj gets the same permutation back (k_proj with the kv head count).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

PROJ = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
_NAME = re.compile(r"layers\.(\d+)\.self_attn\.(\w+)\.lora_([AB])\.")
PERMUTED_ARCHS = {"llama"}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's HF -> GGUF row permutation for q/k (convert_hf_to_gguf's LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(lora: Mapping[str, Any], arch: str, n_head: int, n_head_kv: int) -> dict[str, np.ndarray]:
    """GGUF adapter tensor name -> float32 array, from PEFT parameter names and tensors."""
    out: dict[str, np.ndarray] = {}
    for name, t in lora.items():
        m = _NAME.search(name)
        if not m or m.group(2) not in PROJ:
            raise ValueError(f"cannot export LoRA weight {name!r}: only attention projections are supported")
        layer, proj, ab = int(m.group(1)), m.group(2), m.group(3)
        w = t.detach().to("cpu").float().numpy() if hasattr(t, "detach") else np.asarray(t, dtype=np.float32)
        if ab == "B" and arch in PERMUTED_ARCHS and proj in ("q_proj", "k_proj"):
            w = _permute(w, n_head if proj == "q_proj" else n_head_kv)
        out[f"blk.{layer}.{PROJ[proj]}.weight.lora_{ab.lower()}"] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def base_architecture(gguf_path: Path) -> str:
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields["general.architecture"]
    return bytes(field.parts[field.data[0]]).decode()


def write_adapter(path: Path, lora: Mapping[str, Any], arch: str, alpha: float, n_head: int,
                  n_head_kv: int) -> Path:
    """Write the adapter file atomically (a killed export leaves no half file)."""
    import gguf

    tensors = gguf_tensors(lora, arch, n_head, n_head_kv)
    if not tensors:
        raise ValueError("no LoRA weights to export")
    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for name in sorted(tensors):
        w.add_tensor(name, tensors[name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path
