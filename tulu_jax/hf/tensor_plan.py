"""The one table of Hugging Face Llama tensors: each kind's HF name, where it sits in our params, its layout.

``tensor_plan(config)`` turns the table into every HF tensor of one model, with our shape of it (from the
model itself, ``models.params.param_shapes``) and the HF shape behind it. The host conversion, the sharded
load, the streamed export and ``tulu-jax convert`` all read this plan: a new tensor kind is one row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from tulu_jax.hf.layout import Layout
from tulu_jax.models.config import LlamaConfig
from tulu_jax.models.params import param_shapes

LAYER = "{layer}"  # in a per-layer kind's HF name: the layer's index


def _always(config: LlamaConfig) -> bool:
    return True


def _untied(config: LlamaConfig) -> bool:
    return not config.tie_word_embeddings


@dataclass(frozen=True)
class TensorKind:
    """One kind of HF tensor. Per-layer kinds have ``{layer}`` in ``hf_name`` and a ``path`` inside a layer."""

    hf_name: str
    path: tuple[str, ...]
    layout: Layout = Layout()
    present: Callable[[LlamaConfig], bool] = _always

    @property
    def per_layer(self) -> bool:
        return LAYER in self.hf_name


_HEADS_IN = Layout(transposed=True, split_axis=1)  # [hidden, heads, head_dim] from HF [heads·head_dim, hidden]
_HEADS_OUT = Layout(transposed=True, split_axis=0)  # [heads, head_dim, hidden] from HF [hidden, heads·head_dim]
_LINEAR = Layout(transposed=True)

TENSOR_KINDS: tuple[TensorKind, ...] = (
    TensorKind("model.embed_tokens.weight", ("embed_tokens", "embedding")),
    TensorKind("model.norm.weight", ("norm", "scale")),
    TensorKind("lm_head.weight", ("lm_head", "kernel"), _LINEAR, present=_untied),
    TensorKind("model.layers.{layer}.self_attn.q_proj.weight", ("self_attn", "q_proj", "kernel"), _HEADS_IN),
    TensorKind("model.layers.{layer}.self_attn.k_proj.weight", ("self_attn", "k_proj", "kernel"), _HEADS_IN),
    TensorKind("model.layers.{layer}.self_attn.v_proj.weight", ("self_attn", "v_proj", "kernel"), _HEADS_IN),
    TensorKind("model.layers.{layer}.self_attn.o_proj.weight", ("self_attn", "o_proj", "kernel"), _HEADS_OUT),
    TensorKind("model.layers.{layer}.mlp.gate_proj.weight", ("mlp", "gate_proj", "kernel"), _LINEAR),
    TensorKind("model.layers.{layer}.mlp.up_proj.weight", ("mlp", "up_proj", "kernel"), _LINEAR),
    TensorKind("model.layers.{layer}.mlp.down_proj.weight", ("mlp", "down_proj", "kernel"), _LINEAR),
    TensorKind("model.layers.{layer}.input_layernorm.weight", ("input_layernorm", "scale")),
    TensorKind("model.layers.{layer}.post_attention_layernorm.weight", ("post_attention_layernorm", "scale")),
)

# Tensors some checkpoints carry that are derived, not learned.
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass(frozen=True)
class PlannedTensor:
    """One HF tensor of one model: the leaf of our params holding it and how it is laid out there."""

    name: str
    path: tuple[str, ...]  # of the leaf in our params
    layer: Optional[int]  # its index on the leaf's leading layers axis when layers are stacked (scan_layers)
    layout: Layout
    our_shape: tuple[int, ...]  # of this tensor in our layout (one layer of a stacked leaf)

    @property
    def hf_shape(self) -> tuple[int, ...]:
        return self.layout.hf_shape(self.our_shape)

    def leaf(self, params: Any) -> Any:
        """The leaf of ``params`` holding this tensor (all layers of it when stacked)."""
        return tree_get(params, self.path)

    def ours(self, params: Any) -> Any:
        """This tensor of ``params`` in our layout (one layer of a stacked leaf)."""
        leaf = self.leaf(params)
        return leaf if self.layer is None else leaf[self.layer]


def tensor_plan(config: LlamaConfig) -> list[PlannedTensor]:
    """Every HF tensor of a model of ``config``, in name order (the order the export writes them in)."""
    shapes = param_shapes(config)
    planned = []
    for kind in TENSOR_KINDS:
        if not kind.present(config):
            continue
        for layer in range(config.num_layers) if kind.per_layer else [None]:
            if layer is None:
                path, stacked = kind.path, None
            elif config.scan_layers:
                path, stacked = ("layers", *kind.path), layer
            else:
                path, stacked = (f"layers_{layer}", *kind.path), None
            shape = tuple(tree_get(shapes, path).shape)
            planned.append(PlannedTensor(kind.hf_name.replace(LAYER, str(layer)), path, stacked, kind.layout,
                                         shape[1:] if stacked is not None else shape))
    return sorted(planned, key=lambda tensor: tensor.name)


def by_leaf(plan: list[PlannedTensor]) -> dict[tuple[str, ...], list[PlannedTensor]]:
    """The plan grouped by the leaf of our params that holds each tensor (a stacked leaf's in layer order)."""
    leaves: dict[tuple[str, ...], list[PlannedTensor]] = {}
    for tensor in plan:
        leaves.setdefault(tensor.path, []).append(tensor)
    return {path: sorted(group, key=lambda tensor: tensor.layer or 0) for path, group in leaves.items()}


def tree_get(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def tree_set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value
