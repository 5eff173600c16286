"""A Pallas TPU kernel for one decode token per row over the paged KV cache, in the project's page layout.

``attend_pages`` (``models.paged_attention``) is the XLA path: it gathers each block of a row's pages into a
new array before reading it, which on TPU costs a write and a read of every filled page per step. This
kernel reads the pages where they are. Its grid is ``(rows, kv_heads, pages_per_row)``; the page table and
the row lengths are scalar-prefetched, and the KV block of grid step ``(r, h, p)`` is page
``page_table[r, p]``'s keys and values of head ``h`` (``[2, page_size, head_dim]``: k and v are adjacent
combined heads, so one block carries both). The page dim runs last and sequentially: a running float32
softmax (row max, row sum, weighted values) over the row's pages, written out at its last page. Past a
row's last filled page the block index stays on that page, so the pipeline fetches nothing more, and the
compute is skipped.

JAX's own ragged paged attention kernel wants tokens before heads in a page and, with jax 0.10.2, does not
run in interpret mode (``ReshapeTransform has no attribute indices``), so the CPU tests could not check it;
this one runs in interpret mode off TPU (``interpret=None`` picks it), where the tests compare it with the
XLA path.
"""

from __future__ import annotations

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from tulu_jax.models.attention import MASK_VALUE
from tulu_jax.models.backend import free_axes, mesh_axes_for, spec_entry, target_device, traced_mesh

LANES = 128  # the softmax statistics are kept lane-wide, as TPU vector registers hold them


def _kernel(lengths_ref, table_ref, q_ref, kv_ref, out_ref, max_ref, sum_ref, acc_ref, *, page_size: int,
            scale: float):
    row, page = pl.program_id(0), pl.program_id(2)
    length = lengths_ref[row]

    @pl.when(page == 0)
    def _start():
        max_ref[...] = jnp.full(max_ref.shape, -jnp.inf, jnp.float32)
        sum_ref[...] = jnp.zeros(sum_ref.shape, jnp.float32)
        acc_ref[...] = jnp.zeros(acc_ref.shape, jnp.float32)

    @pl.when(page * page_size < length)
    def _accumulate():
        query = q_ref[...].astype(jnp.float32)  # [groups, head_dim]
        keys, values = kv_ref[0].astype(jnp.float32), kv_ref[1].astype(jnp.float32)  # [page_size, head_dim]
        scores = jax.lax.dot_general(query, keys, (((1,), (1,)), ((), ())),
                                     preferred_element_type=jnp.float32) * scale  # [groups, page_size]
        slots = page * page_size + jax.lax.broadcasted_iota(jnp.int32, scores.shape, 1)
        scores = jnp.where(slots < length, scores, MASK_VALUE)
        previous = max_ref[...]  # [groups, LANES], every lane the same
        new_max = jnp.maximum(previous, scores.max(axis=-1, keepdims=True))
        correction = jnp.exp(previous - new_max)
        probabilities = jnp.exp(scores - new_max[:, :1])
        sum_ref[...] = sum_ref[...] * correction + probabilities.sum(axis=-1, keepdims=True)
        max_ref[...] = new_max
        acc_ref[...] = acc_ref[...] * correction[:, :1] + jnp.dot(probabilities, values,
                                                                  preferred_element_type=jnp.float32)

    @pl.when(page == pl.num_programs(2) - 1)
    def _finish():  # a row with no tokens (an idle decode slot) gives zeros
        total = sum_ref[:, :1]
        out_ref[...] = jnp.where(total > 0, acc_ref[...] / jnp.where(total > 0, total, 1.0), 0.0).astype(out_ref.dtype)


def attend_pages_kernel(q: jnp.ndarray, pages: jnp.ndarray, page_table: jnp.ndarray, kv_lengths: jnp.ndarray,
                        interpret: Optional[bool] = None) -> jnp.ndarray:
    """What ``paged_attention.attend_pages`` computes, by the kernel: ``q [rows, 1, kv_heads, groups, head_dim]``
    over ``pages [pages, 2 * kv_heads, page_size, head_dim]`` -> ``[rows, 1, kv_heads, groups, head_dim]``.
    A row with ``kv_length`` 0 gives zeros."""
    if interpret is None:
        interpret = target_device()[0] != "tpu"
    rows, _, kv_heads, groups, head_dim = q.shape
    page_size, pages_per_row = pages.shape[2], page_table.shape[1]

    def kv_block(row, head, page, lengths, table):
        last = jnp.maximum(lengths[row] - 1, 0) // page_size  # past it, stay on the last page: nothing is fetched
        return table[row, jnp.minimum(page, last)], head, 0, 0

    grid_spec = pltpu.PrefetchScalarGridSpec(
        num_scalar_prefetch=2,
        grid=(rows, kv_heads, pages_per_row),
        in_specs=[
            pl.BlockSpec((None, None, groups, head_dim), lambda row, head, page, lengths, table: (row, head, 0, 0)),
            pl.BlockSpec((None, 2, page_size, head_dim), kv_block),
        ],
        out_specs=pl.BlockSpec((None, None, groups, head_dim), lambda row, head, page, lengths, table: (row, head, 0, 0)),
        scratch_shapes=[pltpu.VMEM((groups, LANES), jnp.float32), pltpu.VMEM((groups, LANES), jnp.float32),
                        pltpu.VMEM((groups, head_dim), jnp.float32)],
    )
    call = pl.pallas_call(
        functools.partial(_kernel, page_size=page_size, scale=head_dim**-0.5),
        grid_spec=grid_spec,
        out_shape=jax.ShapeDtypeStruct((rows, kv_heads, groups, head_dim), q.dtype),
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "arbitrary")),
        interpret=interpret,
    )
    return call(kv_lengths.astype(jnp.int32), page_table.astype(jnp.int32), q[:, 0], pages)[:, None]


def attend_pages_over_heads(q: jnp.ndarray, pages: jnp.ndarray, page_table: jnp.ndarray, kv_lengths: jnp.ndarray,
                            interpret: Optional[bool] = None) -> jnp.ndarray:
    """The kernel on each chip of a tensor-parallel group: a ``shard_map`` over the mesh axes not already manual
    (inside the sampler's own over the groups: the group's axes; Mosaic kernels are never partitioned
    automatically), the query's and the pages' KV heads split over those the rules give ``kv_heads``, the rows,
    the page table and the lengths whole. Off a mesh, one call."""
    kernel = functools.partial(attend_pages_kernel, interpret=interpret)
    mesh = traced_mesh()
    free = free_axes(mesh) if mesh is not None else ()
    if not free:
        return kernel(q, pages, page_table, kv_lengths)
    heads = spec_entry(mesh_axes_for("kv_heads", q.shape[2], mesh))
    q_spec = jax.sharding.PartitionSpec(None, None, heads, None, None)
    pages_spec = jax.sharding.PartitionSpec(None, heads, None, None)
    whole = jax.sharding.PartitionSpec()
    return jax.shard_map(kernel, mesh=mesh, in_specs=(q_spec, pages_spec, whole, whole), out_specs=q_spec,
                         axis_names=frozenset(free), check_vma=False)(q, pages, page_table, kv_lengths)
