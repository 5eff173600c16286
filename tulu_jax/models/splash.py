"""Splash attention (the Pallas TPU kernel that ships with JAX) for whole-sequence causal self-attention.

It never materialises the ``[queries, keys]`` scores: it walks ``block_q x block_kv`` tiles, skips the
tiles above the causal diagonal, and keeps the softmax statistics (row max, row sum) in float32 whatever
the input dtype. Packed rows pass their segment ids; grouped-query heads index their KV head inside the
kernel, so K/V are never repeated.

Given a mesh (the one the program is traced under, ``backend.traced_mesh``, with the flax logical-axis rules
the trainer sets up) the kernel runs per device inside ``shard_map``: batch over the mesh axes of the logical ``batch`` axis, heads over those of
``heads``. When KV heads do not divide over the head axes (8 KV heads on a tensor axis of 16), K/V stay
whole on each device and every device takes the one KV head its query heads use. Off TPU it runs in
Pallas interpret mode (slow, exact: for tests). The target device is the mesh's (``backend.target_device``),
so a TPU plan compiled on a CPU host gets the real kernel and that generation's tiles.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.experimental.pallas.ops.tpu import splash_attention as splash

from tulu_jax.models.backend import mesh_axes_for, spec_entry, target_device

LANES = 128  # splash tiles are multiples of the TPU lane width

# (block_q, block_kv, block_kv_compute) per TPU generation. Starting points in the range MaxText uses for
# Llama (512-wide tiles; 1024-wide key tiles where VMEM is larger), not tuned here: override them with
# model.splash_block_q / model.splash_block_kv.
BLOCK_SIZES_BY_GENERATION: dict[str, tuple[int, int, int]] = {
    "v4": (512, 512, 512),
    "v5e": (512, 512, 512),
    "v5p": (512, 1024, 512),
    "v6e": (512, 1024, 512),
}
DEFAULT_BLOCK_SIZES = (512, 512, 512)


def tpu_generation(device_kind: str) -> Optional[str]:
    """``"v5e"``, ``"v5p"``, ... from a ``jax.Device.device_kind`` such as ``"TPU v5 lite"``; None off TPU."""
    kind = device_kind.lower()
    if "tpu" not in kind:
        return None
    if "v6" in kind:
        return "v6e"
    if "v5" in kind:
        return "v5e" if ("lite" in kind or "v5e" in kind) else "v5p"
    if "v4" in kind:
        return "v4"
    return None


def _largest_tile(limit: int, length: int) -> int:
    """The largest multiple of 128 that is at most ``limit`` and divides ``length`` (a multiple of 128)."""
    tile = max(LANES, min(limit, length) // LANES * LANES)
    while length % tile:
        tile -= LANES
    return tile


def block_sizes(length: int, block_q: int = 0, block_kv: int = 0, device_kind: Optional[str] = None
                ) -> tuple[int, splash.BlockSizes]:
    """The padded sequence length and the splash tiles for a ``length``-long sequence.

    ``block_q``/``block_kv`` of 0 take the generation's defaults. The sequence is padded to a multiple of
    128 and each tile shrinks to the largest multiple of 128 dividing the padded length, so padding never
    exceeds 127 positions.
    """
    if device_kind is None:
        device_kind = target_device()[1]
    default_q, default_kv, default_compute = BLOCK_SIZES_BY_GENERATION.get(tpu_generation(device_kind) or "",
                                                                           DEFAULT_BLOCK_SIZES)
    padded = -(-length // LANES) * LANES
    tile_q = _largest_tile(block_q or default_q, padded)
    tile_kv = _largest_tile(block_kv or default_kv, padded)
    tile_kv_compute = _largest_tile(min(default_compute, tile_kv), tile_kv)
    sizes = splash.BlockSizes(
        block_q=tile_q, block_kv=tile_kv, block_kv_compute=tile_kv_compute,
        block_q_dkv=tile_q, block_kv_dkv=tile_kv, block_kv_dkv_compute=tile_kv_compute,
        block_q_dq=tile_q, block_kv_dq=tile_kv,
    )
    return padded, sizes


def _kernel(heads: int, length: int, sizes: splash.BlockSizes, interpret: bool):
    """A causal splash kernel for ``[heads, length, head_dim]`` queries. Built at each trace: its block masks
    become arrays of that trace (JAX caches the host-side mask processing, so layers share the work)."""
    mask = splash.MultiHeadMask([splash.CausalMask((length, length))] * heads)
    return splash.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1, interpret=interpret)


def splash_self_attend(
    q: jnp.ndarray,  # [batch, length, kv_heads, groups, head_dim]
    k: jnp.ndarray,  # [batch, length, kv_heads, head_dim]
    v: jnp.ndarray,  # [batch, length, kv_heads, head_dim]
    segment_ids: jnp.ndarray,  # [batch, length]; 0 = padding
    *,
    mesh,  # the mesh to run the kernel over (``backend.traced_mesh()``); None: the whole arrays at once
    block_q: int = 0,
    block_kv: int = 0,
    interpret: Optional[bool] = None,
) -> jnp.ndarray:
    """Causal self-attention within segments, equal to ``attention.causal_self_attend``: ``[b, l, kvh, g, d]``."""
    batch, length, kv_heads, groups, head_dim = q.shape
    heads = kv_heads * groups
    if interpret is None:
        interpret = target_device()[0] != "tpu"
    padded, sizes = block_sizes(length, block_q, block_kv)
    # Splash does not scale the scores; the scale is folded into q (exact when head_dim is a power of 4).
    q = (q.astype(jnp.float32) * head_dim**-0.5).astype(q.dtype)
    # Head-major layouts; query head kv*groups + g uses KV head kv, the order splash groups heads in.
    q = q.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)
    k = k.astype(q.dtype).transpose(0, 2, 1, 3)
    v = v.astype(q.dtype).transpose(0, 2, 1, 3)
    # Padded slots come after every real one, so causality already hides them from real queries.
    pad = padded - length
    if pad:
        q, k, v = (jnp.pad(x, ((0, 0), (0, 0), (0, pad), (0, 0))) for x in (q, k, v))
        segment_ids = jnp.pad(segment_ids, ((0, 0), (0, pad)))
    segment_ids = segment_ids.astype(jnp.int32)

    if mesh is None or mesh.size == 1:
        out = _attend_shard(q, k, v, segment_ids, sizes=sizes, interpret=interpret, kv_head_axes=None, groups=groups)
    else:
        out = _sharded(q, k, v, segment_ids, mesh, sizes, interpret, groups)
    out = out[:, :, :length].transpose(0, 2, 1, 3)  # [batch, length, heads, head_dim]
    return out.reshape(batch, length, kv_heads, groups, head_dim)


def _sharded(q, k, v, segment_ids, mesh, sizes, interpret, groups):
    """``_attend_shard`` per device: batch over the ``batch`` axes, heads over the ``heads`` axes."""
    batch, heads = q.shape[:2]
    kv_heads = k.shape[1]
    batch_axes = mesh_axes_for("batch", batch, mesh)
    head_axes = mesh_axes_for("heads", heads, mesh)
    kv_axes = mesh_axes_for("kv_heads", kv_heads, mesh)
    kv_head_axes = None
    if head_axes and kv_axes != head_axes:
        shards = math.prod(mesh.shape[axis] for axis in head_axes)
        if groups % (heads // shards) == 0:
            # Each device's query heads share one KV head: K/V stay whole, the device picks that head.
            kv_axes, kv_head_axes = (), head_axes
        else:
            head_axes = kv_axes = ()
    batch_entry = spec_entry(batch_axes)
    q_spec = jax.sharding.PartitionSpec(batch_entry, spec_entry(head_axes), None, None)
    kv_spec = jax.sharding.PartitionSpec(batch_entry, spec_entry(kv_axes), None, None)
    segment_spec = jax.sharding.PartitionSpec(batch_entry, None)
    body = functools.partial(_attend_shard, sizes=sizes, interpret=interpret, kv_head_axes=kv_head_axes,
                             groups=groups)
    return jax.shard_map(body, mesh=mesh, in_specs=(q_spec, kv_spec, kv_spec, segment_spec), out_specs=q_spec,
                         check_vma=False)(q, k, v, segment_ids)


def _attend_shard(q, k, v, segment_ids, *, sizes, interpret, kv_head_axes, groups):
    """The kernel over local ``q [b, h, L, d]``, ``k``/``v [b, kvh, L, d]``, vmapped over the batch."""
    if kv_head_axes is not None:
        kv_head = jax.lax.axis_index(kv_head_axes) * q.shape[1] // groups
        k = jax.lax.dynamic_slice_in_dim(k, kv_head, 1, axis=1)
        v = jax.lax.dynamic_slice_in_dim(v, kv_head, 1, axis=1)
    kernel = _kernel(q.shape[1], q.shape[2], sizes, interpret)

    def one_row(q_row, k_row, v_row, segment_row):
        return kernel(q_row, k_row, v_row, segment_ids=splash.SegmentIds(q=segment_row, kv=segment_row))

    return jax.vmap(one_row)(q, k, v, segment_ids)
