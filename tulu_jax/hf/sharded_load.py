"""Load a Hugging Face Llama straight into sharded arrays: each process reads only what its devices hold.

``jax.make_array_from_callback`` asks, per local device, for one slice of each parameter; the callback turns
that slice of our layout into the rectangle of the HF tensor behind it (``mapping.Layout``), reads those
bytes (``SafetensorsIndex.read_region``) and casts them. No host ever holds the whole model, nothing is
gathered, and no replicated copy is made on the way (``device_put`` of host arrays would check equality
across processes by gathering).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import ml_dtypes
import numpy as np

from tulu_jax.errors import CheckpointError
from tulu_jax.hf.convert import check_tensor_names
from tulu_jax.hf.mapping import LAYER_LAYOUTS, LAYER_RULES, Layout
from tulu_jax.hf.safetensors_index import SafetensorsIndex
from tulu_jax.hf.tied_head import check_tied_head
from tulu_jax.models.config import LlamaConfig
from tulu_jax.models.params import param_shapes


def load_hf_params_sharded(directory: str | os.PathLike, config: LlamaConfig, shardings: Any) -> Any:
    """Params of the HF checkpoint in ``directory`` as ``jax.Array``s laid out by ``shardings``.

    ``config`` is the checkpoint's config with the execution policy applied (param_dtype, scan_layers).
    """
    index = SafetensorsIndex(directory)
    check_tensor_names(index.tensors, config, where=str(directory))
    check_tied_head(config.tie_word_embeddings, index.__contains__, index.shape,
                    lambda name, row: index.read_region(name, slice(row, row + 1)), str(directory))
    target = np.dtype(ml_dtypes.bfloat16) if config.param_dtype == "bfloat16" else np.dtype(np.float32)
    sources = _sources(config)
    shapes = param_shapes(config)

    def leaf(source, shape, sharding):
        names, layout = source
        layer_shape = shape.shape if isinstance(names, str) else shape.shape[1:]
        for name in [names] if isinstance(names, str) else names:
            _check_shape(index, name, layout.hf_shape(layer_shape), directory)

        def read(index_slices):
            if isinstance(names, str):
                return _read_ours(index, names, layout, shape.shape, index_slices, target)
            layers = range(*index_slices[0].indices(len(names)))
            return np.stack([_read_ours(index, names[i], layout, shape.shape[1:], index_slices[1:], target) for i in layers])

        return jax.make_array_from_callback(shape.shape, sharding, read, dtype=target)

    return jax.tree.map(leaf, sources, shapes, shardings, is_leaf=lambda node: isinstance(node, tuple))


def _check_shape(index: SafetensorsIndex, name: str, expected: tuple[int, ...], directory) -> None:
    found = tuple(index.shape(name))
    if found != expected:
        raise CheckpointError(
            f"{directory}: tensor {name} has shape {list(found)} but config.json implies {list(expected)}; "
            "config.json (hidden_size, num_attention_heads, num_key_value_heads, head_dim, intermediate_size) "
            "does not match the weights"
        )


def _sources(config: LlamaConfig) -> dict:
    """A tree like the params whose leaves are ``(HF name or per-layer names, Layout)``."""
    tree: dict = {
        "embed_tokens": {"embedding": ("model.embed_tokens.weight", Layout())},
        "norm": {"scale": ("model.norm.weight", Layout())},
    }
    if not config.tie_word_embeddings:
        tree["lm_head"] = {"kernel": ("lm_head.weight", Layout(transposed=True))}
    for hf_name, path, _, _ in LAYER_RULES:
        names = [f"model.layers.{i}.{hf_name}" for i in range(config.num_layers)]
        if config.scan_layers:
            _set(tree.setdefault("layers", {}), path, (names, LAYER_LAYOUTS[hf_name]))
        else:
            for i, name in enumerate(names):
                _set(tree.setdefault(f"layers_{i}", {}), path, (name, LAYER_LAYOUTS[hf_name]))
    return tree


def _read_ours(index: SafetensorsIndex, name: str, layout: Layout, our_shape, our_index, target: np.dtype) -> np.ndarray:
    """``ours[our_index]`` for one HF tensor, reading only the bytes behind it."""
    bounds = [s.indices(dim)[:2] for s, dim in zip(our_index, our_shape)]
    inner_keep = None
    if layout.split_axis is not None:
        axis = layout.split_axis
        inner = our_shape[axis + 1]
        (outer_start, outer_stop), inner_keep = bounds[axis], bounds[axis + 1]
        bounds = bounds[:axis] + [(outer_start * inner, outer_stop * inner)] + bounds[axis + 2:]
    matrix_index = [slice(start, stop) for start, stop in bounds]
    hf_index = matrix_index[::-1] if layout.transposed else matrix_index
    region = index.read_region(name, *hf_index)
    if layout.transposed:
        region = region.T
    if layout.split_axis is not None:
        axis = layout.split_axis
        inner = our_shape[axis + 1]
        region = region.reshape(region.shape[:axis] + (-1, inner) + region.shape[axis + 1:])
        keep = [slice(None)] * region.ndim
        keep[axis + 1] = slice(*inner_keep)
        region = region[tuple(keep)]
    return np.ascontiguousarray(region, dtype=target)


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value
