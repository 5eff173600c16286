"""The sampling layout: the policy resharded once per rollout so that no decode step gathers a weight.

A training layout splits every weight over fsdp; a decode step that read weights there would all-gather
each of them at every token. Before a rollout the policy is copied, in one program, into the sampling
layout (``sharding`` role ``sample``): on a sampling mesh of the same devices as groups of ``group`` chips,
each weight is split over the chips of a group (tensor-parallel) and replicated across groups, in the
compute dtype, with the layers unrolled. Each group then decodes its own rows with its weights resident.

The group size trades memory for interconnect: a group of g chips holds ``weight bytes / g`` per chip, and
its decode matmuls all-reduce activations over g chips (small: a few rows × hidden). ``group_size`` picks
the smallest group, at least the training mesh's tensor size, whose share of the weights fits the HBM left
beside the learner's state (a 405B policy in bf16 needs groups of more than 8 v5p chips).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from tulu_jax import sharding
from tulu_jax.errors import MeshError
from tulu_jax.models import LlamaConfig, param_logical_axes
from tulu_jax.models.layers import _dtype
from tulu_jax.models.params import layers_as_list, param_shapes, with_layers

logger = logging.getLogger(__name__)

# The share of a chip's free HBM the resident sampling weights may take; the rest is for the KV pages.
WEIGHT_SHARE_OF_FREE_HBM = 0.5


def sampling_model(config: LlamaConfig) -> LlamaConfig:
    """The sampler's view of the model: unrolled layers, weights stored in the compute dtype."""
    return dataclasses.replace(config, scan_layers=False, param_dtype=config.compute_dtype, remat="none")


def sampling_weight_bytes(config: LlamaConfig) -> int:
    return config.num_params() * jnp.dtype(_dtype(config.compute_dtype)).itemsize


def group_size(config: LlamaConfig, device_count: int, tensor: int, free_hbm_bytes: Optional[float]) -> int:
    """The smallest group (``tensor`` × a power of two, dividing the devices) whose weight share fits
    ``WEIGHT_SHARE_OF_FREE_HBM`` of ``free_hbm_bytes`` per chip; ``tensor`` when the free HBM is unknown."""
    candidates = []
    size = tensor
    while size <= device_count:
        if device_count % size == 0:
            candidates.append(size)
        size *= 2
    if not candidates:
        raise MeshError(f"no sampling group of tensor×2^k chips divides {device_count} devices (tensor={tensor})")
    if free_hbm_bytes is None:
        return candidates[0]
    weights = sampling_weight_bytes(config)
    for size in candidates:
        if weights / size <= WEIGHT_SHARE_OF_FREE_HBM * free_hbm_bytes:
            return size
    logger.warning("the policy's %.1f GB of sampling weights fit no group of chips within half the free HBM; "
                   "using groups of %d", weights / 1e9, candidates[-1])
    return candidates[-1]


def free_hbm_per_chip(mesh: Mesh) -> Optional[float]:
    """What the accelerator says is free on this process's first chip now (None on CPU or compile-only devices;
    the planner passes its own figure to ``group_size``)."""
    local = [device for device in mesh.devices.flat if device.process_index == jax.process_index()]
    if not local or local[0].platform == "cpu":
        return None
    try:
        stats = local[0].memory_stats() or {}
    except jax.errors.JaxRuntimeError:  # compile-only devices have no memory to report
        return None
    if "bytes_limit" not in stats:
        return None
    return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0))


@functools.lru_cache(maxsize=16)
def sampling_param_shardings(config: LlamaConfig, mesh: Mesh):
    """The sampling layout's shardings of the sampler's params (``sampling_model(config)``) on a sampling mesh."""
    model = sampling_model(config)
    return sharding.tree_shardings(mesh, param_logical_axes(model), param_shapes(model), role="sample")


@functools.lru_cache(maxsize=16)
def resharder(config: LlamaConfig, sample_mesh: Optional[Mesh]):
    """The whole copy as one program (what the planner compiles to count its bytes): params of ``config`` in
    any layout on the same devices, cast to the compute dtype, layers unrolled, in the sampling layout."""
    cast_unrolled = _cast_unrolled(config)
    if sample_mesh is None:
        return cast_unrolled
    return jax.jit(cast_unrolled, out_shardings=sampling_param_shardings(config, sample_mesh))


@functools.lru_cache(maxsize=16)
def _cast_unrolled(config: LlamaConfig):
    """Cast to the compute dtype and unroll the layers where the params are (no data crosses chips)."""
    model = sampling_model(config)
    dtype = _dtype(config.compute_dtype)

    def cast_unrolled(params):
        cast = jax.tree.map(lambda leaf: leaf.astype(dtype), params)
        return with_layers(cast, layers_as_list(cast, config), model)

    return jax.jit(cast_unrolled)


def to_sampling_layout(params, config: LlamaConfig, sample_mesh: Optional[Mesh]):
    """``params`` of ``config`` in the sampling layout on ``sample_mesh`` (None: one device), copied once per
    rollout: cast and unrolled in place, then moved weight by weight. One transfer per weight keeps every
    chip's collectives in one order (XLA's CPU runtime may run the independent collectives of one program
    in a different order on each device, and waits for ever when they meet; a TPU runs them in order)."""
    local = _cast_unrolled(config)(params)
    if sample_mesh is None:
        return local
    return jax.tree.map(jax.device_put, local, sampling_param_shardings(config, sample_mesh))


def sample_mesh_for(mesh: Mesh, config: LlamaConfig, group: int = 0) -> Mesh:
    """The sampling mesh for a training ``mesh``: groups of ``group`` chips (0: ``group_size``'s choice)."""
    size = group or group_size(config, mesh.size, mesh.shape["tensor"], free_hbm_per_chip(mesh))
    return sharding.sampling_mesh(mesh, size)


def fitted_slots(decode, config: LlamaConfig, sample_mesh: Optional[Mesh], rows_per_group: int, row_tokens: int,
                 free_hbm_bytes: Optional[float] = None):
    """``decode`` with its automatic slots fitted to the HBM a chip has left once it holds its share of the
    sampling weights (``free_hbm_bytes``: the planner's figure; default: what the chip reports now)."""
    if sample_mesh is None:
        return decode
    group = sample_mesh.shape["tensor"]
    free = free_hbm_per_chip(sample_mesh) if free_hbm_bytes is None else free_hbm_bytes
    if free is not None:
        free -= sampling_weight_bytes(config) / group
    return decode.fitted(config, rows_per_group, row_tokens, group, free)
