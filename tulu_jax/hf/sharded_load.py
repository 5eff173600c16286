"""Load a Hugging Face Llama straight into sharded arrays: each process reads only what its devices hold.

``jax.make_array_from_callback`` asks, per local device, for one slice of each parameter; the callback turns
that slice of our layout into the rectangle of the HF tensor behind it (``tensor_plan``, ``Layout.read``), reads those
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

from tulu_jax.hf.safetensors_index import SafetensorsIndex
from tulu_jax.hf.tensor_check import check_tensors
from tulu_jax.hf.tensor_plan import PlannedTensor, by_leaf, tensor_plan, tree_get, tree_set
from tulu_jax.hf.tied_head import check_tied_head
from tulu_jax.models.config import LlamaConfig


def load_hf_params_sharded(directory: str | os.PathLike, config: LlamaConfig, shardings: Any) -> Any:
    """Params of the HF checkpoint in ``directory`` as ``jax.Array``s laid out by ``shardings``.

    ``config`` is the checkpoint's config with the execution policy applied (param_dtype, scan_layers).
    """
    index = SafetensorsIndex(directory)
    plan = tensor_plan(config)
    check_tensors(plan, {name: location.shape for name, location in index.tensors.items()}, config.num_layers,
                  str(directory))
    check_tied_head(config.tie_word_embeddings, index.__contains__, index.shape,
                    lambda name, row: index.read_region(name, slice(row, row + 1)), str(directory))
    target = np.dtype(ml_dtypes.bfloat16) if config.param_dtype == "bfloat16" else np.dtype(np.float32)

    def read(tensor: PlannedTensor, our_index: tuple) -> np.ndarray:
        """``ours[our_index]`` of one HF tensor, reading only the bytes behind it."""
        region = tensor.layout.read(lambda *hf_index: index.read_region(tensor.name, *hf_index), tensor.our_shape,
                                    our_index)
        return np.ascontiguousarray(region, dtype=target)

    params: dict = {}
    for path, group in by_leaf(plan).items():
        stacked = group[0].layer is not None
        shape = (len(group), *group[0].our_shape) if stacked else group[0].our_shape

        def leaf_slice(our_index, group=group, stacked=stacked):
            if not stacked:
                return read(group[0], our_index)
            return np.stack([read(group[layer], our_index[1:])
                             for layer in range(*our_index[0].indices(len(group)))])

        tree_set(params, path, jax.make_array_from_callback(shape, tree_get(shardings, path), leaf_slice, dtype=target))
    return params
