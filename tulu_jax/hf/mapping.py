"""Tensor-by-tensor mapping between Hugging Face Llama weights and our parameter tree.

HF stores linear weights as ``[out, in]``; we store kernels as ``[in..., out...]`` with heads split out,
so every conversion is a transpose and a reshape: exact in both directions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from tulu_jax.models.config import LlamaConfig

# (HF name inside a layer, our path inside a layer, to ours, to HF) for each per-layer tensor.
LayerRule = tuple[str, tuple[str, ...], Callable[[np.ndarray, LlamaConfig], np.ndarray], Callable[[np.ndarray, LlamaConfig], np.ndarray]]


def _split_heads(heads_attr: str):
    def to_ours(weight: np.ndarray, c: LlamaConfig) -> np.ndarray:
        return weight.T.reshape(c.hidden_size, getattr(c, heads_attr), c.resolved_head_dim)

    def to_hf(kernel: np.ndarray, c: LlamaConfig) -> np.ndarray:
        return kernel.reshape(c.hidden_size, -1).T

    return to_ours, to_hf


def _output_projection():
    def to_ours(weight: np.ndarray, c: LlamaConfig) -> np.ndarray:
        return weight.T.reshape(c.num_heads, c.resolved_head_dim, c.hidden_size)

    def to_hf(kernel: np.ndarray, c: LlamaConfig) -> np.ndarray:
        return kernel.reshape(-1, c.hidden_size).T

    return to_ours, to_hf


def _transpose(weight: np.ndarray, c: LlamaConfig) -> np.ndarray:
    return weight.T


def _same(weight: np.ndarray, c: LlamaConfig) -> np.ndarray:
    return weight


LAYER_RULES: list[LayerRule] = [
    ("self_attn.q_proj.weight", ("self_attn", "q_proj", "kernel"), *_split_heads("num_heads")),
    ("self_attn.k_proj.weight", ("self_attn", "k_proj", "kernel"), *_split_heads("num_kv_heads")),
    ("self_attn.v_proj.weight", ("self_attn", "v_proj", "kernel"), *_split_heads("num_kv_heads")),
    ("self_attn.o_proj.weight", ("self_attn", "o_proj", "kernel"), *_output_projection()),
    ("mlp.gate_proj.weight", ("mlp", "gate_proj", "kernel"), _transpose, _transpose),
    ("mlp.up_proj.weight", ("mlp", "up_proj", "kernel"), _transpose, _transpose),
    ("mlp.down_proj.weight", ("mlp", "down_proj", "kernel"), _transpose, _transpose),
    ("input_layernorm.weight", ("input_layernorm", "scale"), _same, _same),
    ("post_attention_layernorm.weight", ("post_attention_layernorm", "scale"), _same, _same),
]



@dataclass(frozen=True)
class Layout:
    """How our array is made from a HF tensor: the HF matrix, transposed or not, then one axis of it split
    into ``[outer, inner]`` (heads and head_dim). Lets a loader read only the HF bytes behind a slice of ours."""

    transposed: bool = False
    split_axis: Optional[int] = None  # axis of the (transposed) matrix that our array splits in two

    def hf_shape(self, our_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The HF tensor shape behind an array of ours of ``our_shape``."""
        shape = list(our_shape)
        if self.split_axis is not None:
            shape[self.split_axis : self.split_axis + 2] = [shape[self.split_axis] * shape[self.split_axis + 1]]
        return tuple(shape[::-1] if self.transposed else shape)


LAYER_LAYOUTS: dict[str, Layout] = {
    "self_attn.q_proj.weight": Layout(transposed=True, split_axis=1),
    "self_attn.k_proj.weight": Layout(transposed=True, split_axis=1),
    "self_attn.v_proj.weight": Layout(transposed=True, split_axis=1),
    "self_attn.o_proj.weight": Layout(transposed=True, split_axis=0),
    "mlp.gate_proj.weight": Layout(transposed=True),
    "mlp.up_proj.weight": Layout(transposed=True),
    "mlp.down_proj.weight": Layout(transposed=True),
    "input_layernorm.weight": Layout(),
    "post_attention_layernorm.weight": Layout(),
}

# Tensors some checkpoints carry that are derived, not learned.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def expected_hf_names(config: LlamaConfig) -> list[str]:
    names = ["model.embed_tokens.weight", "model.norm.weight"]
    if not config.tie_word_embeddings:
        names.append("lm_head.weight")
    for i in range(config.num_layers):
        names += [f"model.layers.{i}.{hf_name}" for hf_name, *_ in LAYER_RULES]
    return names
