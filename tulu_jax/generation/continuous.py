"""Continuous batching over a paged KV cache: a fixed number of decode slots, refilled as rows stop.

The rows of a call (``prompt_ids [rows, prompt_length]``, left-padded as everywhere) are split into
``groups`` equal blocks of consecutive rows; on a sampling mesh each group is one group of chips holding the
weights resident (``generation.sampling_layout``), and every group runs the same loop over its own rows,
inside ``shard_map`` over the group axes: the page tables, gathers and scatters of a group stay on its chips,
and only two scalar flags a step (is any group busy, is any group waiting to refill) cross groups, so all
chips take the same branches:

- ``slots`` rows decode at a time, one token each per step. A slot whose row stopped (a stop token, or
  ``max_new_tokens`` or the row's own limit reached) gives its KV pages back and, at the next step, takes
  the group's next waiting row; prefills run ``refill`` rows at once, when that many slots are free.
- Keys and values live in fixed-size pages (``models.paged_attention``) taken from a pool of
  ``slots × pages_per_row`` pages (``generation.page_pool``), so KV memory is set by the slots, not by the
  rows of the call, and the pages in use follow the tokens written.
- A row's tokens do not depend on its slot or its neighbours: its prompt sits at positions 0.. of its own
  pages, and its token ``t`` is drawn with ``sampling.token_keys(key, row, t)``. Greedy tokens equal the static
  sampler's (``generation.sampler``) row for row, up to float rounding, and sampled ones use the same keys.

The output has the static sampler's shape and row order (``GenerationOutput``), with two counters:
``peak_pages`` (the most pages a group held at once) and ``steps`` (decode steps run).
"""

from __future__ import annotations

import functools
import math
import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from tulu_jax import sharding
from tulu_jax.errors import ConfigError
from tulu_jax.generation import page_pool
from tulu_jax.generation.decode_options import decode_compiler_options
from tulu_jax.generation.sampling_layout import sampling_param_shardings
from tulu_jax.generation.sampling import SamplingConfig, choose_row_tokens, token_keys
from tulu_jax.models import Llama, LlamaConfig
from tulu_jax.models.layers import _dtype
from tulu_jax.models.paged_attention import PagedLayerCache


# One group's pages of one layer: [pages, 2 * kv_heads, page_size, head_dim], split over the group's tensor axis.
PAGE_AXES = (None, "kv_heads", None, None)


@dataclass(frozen=True)
class DecodeSlots:
    """How a group decodes: ``slots`` rows at a time (0: a quarter of its rows), pages of ``page_size`` tokens,
    and ``refill`` rows prefilled together once that many slots are free (0: a quarter of the slots)."""

    slots: int = 0
    page_size: int = 16
    refill: int = 0

    def __post_init__(self) -> None:
        for name in ("slots", "refill"):
            if getattr(self, name) < 0:
                raise ConfigError(f"decode {name} must be >= 0 (0 = automatic), got {getattr(self, name)}")
        if self.page_size < 1:
            raise ConfigError(f"page_size must be positive, got {self.page_size}")

    def resolve(self, rows_per_group: int) -> tuple[int, int]:
        """``(slots, refill)`` for a group of ``rows_per_group`` rows."""
        slots = min(self.slots or max(1, -(-rows_per_group // 4)), rows_per_group)
        refill = min(self.refill or max(1, slots // 4), slots)
        return slots, refill

    def fitted(self, config: LlamaConfig, rows_per_group: int, row_tokens: int, group: int,
               free_hbm_bytes: Optional[float]) -> "DecodeSlots":
        """Automatic slots for the chip: where the free HBM is known (an accelerator, or the planner's figure),
        decoding reads every weight once a step whatever the slots, so the group decodes as many rows at once
        as half the free HBM holds KV pages for (all of them when they fit, and then never refills); where it
        is not (CPU, compute-bound), the default quarter of the rows, refilled as they stop."""
        if self.slots or free_hbm_bytes is None:
            return self
        row_bytes = kv_cache_bytes(config, 1, row_tokens, 0, DecodeSlots(1, self.page_size), 1) / group
        fit = int(0.5 * free_hbm_bytes // max(row_bytes, 1))
        return dataclasses.replace(self, slots=max(1, min(rows_per_group, fit)))


class ContinuousOutput(NamedTuple):
    tokens: jnp.ndarray  # [rows, max_new_tokens] int32, pad_id after the stop
    logprobs: jnp.ndarray  # [rows, max_new_tokens] float32, 0 after the stop
    lengths: jnp.ndarray  # [rows] int32, the stop token included
    stopped: jnp.ndarray  # [rows] bool: the row emitted a stop token
    peak_pages: jnp.ndarray  # int32: the most KV pages one group held at once
    steps: jnp.ndarray  # int32: decode steps run


def left_aligned(prompt_ids, prompt_mask):
    """Left-padded prompts moved to the left edge: ``(ids, lengths)``, pads after the real tokens."""
    lengths = prompt_mask.astype(jnp.int32).sum(axis=-1)
    width = prompt_ids.shape[-1]
    columns = (jnp.arange(width) + (width - lengths)[..., None]) % width
    return jnp.take_along_axis(prompt_ids, columns, axis=-1), lengths


def kv_pages_shape(config: LlamaConfig, pages: int, page_size: int) -> tuple[int, ...]:
    return (pages, 2 * config.num_kv_heads, page_size, config.resolved_head_dim)


def _generate_continuous(
    params,
    prompt_ids: jnp.ndarray,  # [rows, prompt_length] int32, left-padded
    prompt_mask: jnp.ndarray,  # [rows, prompt_length]
    key: jax.Array,
    row_limits: jnp.ndarray,  # [rows] int32: at most this many new tokens per row
    *,
    config: LlamaConfig,
    sampling: SamplingConfig,
    max_new_tokens: int,
    stop_ids: tuple[int, ...],
    pad_id: int,
    decode: DecodeSlots,
    groups: int,
    mesh: Optional[Mesh],
) -> ContinuousOutput:
    rows, _ = prompt_ids.shape
    per_group = rows // groups
    by_group = lambda array: array.reshape(groups, per_group, *array.shape[1:])  # noqa: E731
    inputs = (by_group(prompt_ids), by_group(prompt_mask), by_group(row_limits.astype(jnp.int32)),
              jnp.arange(groups, dtype=jnp.int32) * per_group)
    one_group = functools.partial(_one_group, key=key, config=config, sampling=sampling, max_new_tokens=max_new_tokens,
                                  stop_ids=stop_ids, pad_id=pad_id, decode=decode, mesh=mesh)

    def local_groups(params, *inputs):  # the groups one chip group holds, each looping on its own
        if inputs[0].shape[0] == 1:
            return jax.tree.map(lambda leaf: leaf[None], one_group(params, *(x[0] for x in inputs)))
        return jax.vmap(one_group, in_axes=(None, 0, 0, 0, 0))(params, *inputs)

    if mesh is None:
        out = local_groups(params, *inputs)
    else:
        # Every chip group runs its own decode loop over its own rows (manual over the group axes); inside a
        # group the weights and pages stay split over its tensor axis, as the compiler chooses (automatic).
        over_groups = P(group_axes())
        out = jax.shard_map(local_groups, mesh=mesh, in_specs=(P(), over_groups, over_groups, over_groups, over_groups),
                            out_specs=over_groups, axis_names=frozenset(group_axes()), check_vma=False)(params, *inputs)
    flat = lambda array: array.reshape(rows, *array.shape[2:])  # noqa: E731
    return ContinuousOutput(flat(out["tokens"]), flat(out["logprobs"]), flat(out["lengths"]), flat(out["stopped"]),
                            out["peak_pages"].max(), out["steps"].max())


def _one_group(params, prompt_ids, prompt_mask, limits, first_row, *, key, config: LlamaConfig,
               sampling: SamplingConfig, max_new_tokens: int, stop_ids: tuple[int, ...], pad_id: int,
               decode: DecodeSlots, mesh: Optional[Mesh]) -> dict:
    """One group's rows (``prompt_ids [per_group, prompt_length]`` left-padded, their mask and ``limits``; its
    first row's index in the call is ``first_row``) through its decode slots, until every row stopped."""
    model = Llama(config)
    aligned, lengths = left_aligned(prompt_ids, prompt_mask)
    per_group, prompt_length = aligned.shape
    slots, refill = decode.resolve(per_group)
    page_size = decode.page_size
    pages_per_row = -(-(prompt_length + max_new_tokens) // page_size)
    scratch = slots * pages_per_row
    stop_array = jnp.asarray(stop_ids if stop_ids else (-1,), jnp.int32)

    def constrain_pages(pages):
        # Pages split like the keys and values written into them (k and v of a head are adjacent), so no
        # chip of the group ever needs another chip's pages.
        if mesh is None:
            return pages
        return tuple(jax.lax.with_sharding_constraint(layer, sharding.mesh_spec(PAGE_AXES, layer.shape, mesh, "sample"))
                     for layer in pages)

    def forward(params, ids, positions, segments, pages, where):
        return model.apply({"params": params}, ids, positions, segments, pages, where, method=Llama.with_pages)

    def admit(state, *, count: int):
        """Prefill the group's next ``count`` waiting rows into free slots (fewer if fewer are free or waiting)."""
        free_slots = state["slot_row"] < 0
        chosen = jnp.argsort(~free_slots, stable=True)[:count]  # free slots first, in slot order
        candidate = jnp.arange(count)
        valid = (candidate < free_slots.sum()) & (state["next_row"] + candidate < per_group)
        row = jnp.minimum(state["next_row"] + candidate, per_group - 1)
        ids, length = aligned[row], jnp.maximum(lengths[row], 1)
        needed = jnp.where(valid, -(-length // page_size), 0)
        pool = page_pool.take(state["pool"], chosen, jnp.zeros_like(needed), needed)
        positions = jnp.broadcast_to(jnp.arange(prompt_length, dtype=jnp.int32), ids.shape)
        real = (positions < length[:, None]) & valid[:, None]
        write_pages = jnp.where(real, jnp.take_along_axis(pool.table[chosen], positions // page_size, axis=1), scratch)
        where = PagedLayerCache(None, pool.table[chosen], write_pages, positions % page_size, length, prefill=True)
        # Only each row's last token is projected onto the vocabulary: prompt-length times less head work, and
        # it avoids a defect of XLA's CPU runtime (decode_options.py): the [prompt_length, vocab] projection of
        # a refill prefill inside the loop came out wrong in its first 336 columns on 8 concurrent CPU devices
        # (SmolLM2-135M, 30 layers), while the per-device program equalled a 2-device one that was right.
        last, pages = model.apply({"params": params}, ids, positions, real.astype(jnp.int32), state["pages"], where,
                                  length - 1, method=Llama.with_pages)
        last = last[:, 0]  # [count, vocab]
        keep = lambda old, new: old.at[chosen].set(jnp.where(valid.reshape(-1, *[1] * (new.ndim - 1)), new, old[chosen]))
        return {
            **state,
            "pages": constrain_pages(pages),
            "pool": pool,
            "slot_row": keep(state["slot_row"], row),
            "slot_length": keep(state["slot_length"], length),
            "slot_new": keep(state["slot_new"], jnp.zeros_like(row)),
            "next_logits": keep(state["next_logits"], last),
            "next_row": state["next_row"] + valid.sum(),
        }

    def decode_step(state):
        """One token for every busy slot; finished rows give their pages back."""
        active = state["slot_row"] >= 0
        row = jnp.maximum(state["slot_row"], 0)
        new = state["slot_new"]
        tokens, logprobs = choose_row_tokens(state["next_logits"], sampling, token_keys(key, first_row + row, new))
        tokens = jnp.where(active, tokens, pad_id)
        written_row = jnp.where(active, row, per_group)  # out of range: dropped
        stop = active & jnp.isin(tokens, stop_array)
        out = {
            "tokens": state["tokens"].at[written_row, new].set(tokens, mode="drop"),
            "logprobs": state["logprobs"].at[written_row, new].set(logprobs, mode="drop"),
            "lengths": state["lengths"].at[written_row].set(new + 1, mode="drop"),
            "stopped": state["stopped"].at[written_row].set(stop, mode="drop"),
        }
        new = new + active.astype(jnp.int32)
        finished = active & (stop | (new >= jnp.minimum(limits[row], max_new_tokens)))
        going_on = active & ~finished
        # The new token enters the cache at position slot_length; a row at a page boundary takes a page.
        position = state["slot_length"]
        column = jnp.minimum(position // page_size, pages_per_row - 1)
        pool = page_pool.take(state["pool"], jnp.arange(slots), column,
                              (going_on & (position % page_size == 0)).astype(jnp.int32))
        write_pages = jnp.where(going_on, jnp.take_along_axis(pool.table, column[:, None], axis=1)[:, 0], scratch)
        where = PagedLayerCache(None, pool.table, write_pages[:, None], (position % page_size)[:, None], position + 1)
        logits, pages = forward(params, tokens[:, None], position[:, None], jnp.ones((slots, 1), jnp.int32),
                                state["pages"], where)
        pool = page_pool.give_back(pool, finished, -(-position // page_size))
        return {
            **state,
            **out,
            "pages": constrain_pages(pages),
            "pool": pool,
            "slot_row": jnp.where(finished, -1, state["slot_row"]),
            "slot_length": jnp.where(going_on, position + 1, position),
            "slot_new": new,
            "next_logits": logits[:, 0],
        }

    page_shape = kv_pages_shape(config, scratch + 1, page_size)
    state = {
        "pages": constrain_pages(tuple(jnp.zeros(page_shape, _dtype(config.compute_dtype))
                                       for _ in range(config.num_layers))),
        "pool": page_pool.empty_pool(slots, pages_per_row),
        "slot_row": jnp.full((slots,), -1, jnp.int32),
        "slot_length": jnp.zeros((slots,), jnp.int32),
        "slot_new": jnp.zeros((slots,), jnp.int32),
        "next_logits": jnp.zeros((slots, config.vocab_size), jnp.float32),
        "next_row": jnp.int32(0),
        "tokens": jnp.full((per_group, max_new_tokens), pad_id, jnp.int32),
        "logprobs": jnp.zeros((per_group, max_new_tokens), jnp.float32),
        "lengths": jnp.zeros((per_group,), jnp.int32),
        "stopped": jnp.zeros((per_group,), bool),
    }
    state = admit(state, count=slots)

    def anywhere(flag):
        # On a mesh every group takes the same branches and trips, so all chips meet the same collectives in
        # the same order (a group that has nothing to do runs the step on idle slots, which changes nothing).
        if mesh is None:
            return flag
        return jax.lax.psum(flag.astype(jnp.int32), group_axes()) > 0

    def waiting(state):
        # Prefill in batches: once `refill` slots are free (or as many as rows still wait).
        pending = per_group - state["next_row"]
        return anywhere((pending > 0) & ((state["slot_row"] < 0).sum() >= jnp.minimum(refill, pending)))

    def busy(carry):
        state, _ = carry
        return anywhere((state["slot_row"] >= 0).any() | (state["next_row"] < per_group))

    def step(carry):
        state, steps = carry
        if slots < per_group:  # with a slot for every row, all were admitted before the loop
            state = jax.lax.cond(waiting(state), functools.partial(admit, count=refill), lambda s: s, state)
        return decode_step(state), steps + 1

    state, steps = jax.lax.while_loop(busy, step, (state, jnp.int32(0)))
    return {"tokens": state["tokens"], "logprobs": state["logprobs"], "lengths": state["lengths"],
            "stopped": state["stopped"], "peak_pages": state["pool"].peak, "steps": steps}


@functools.lru_cache(maxsize=64)
def compiled_continuous_sampler(config: LlamaConfig, sampling: SamplingConfig, max_new_tokens: int,
                                stop_ids: tuple[int, ...], pad_id: int, decode: DecodeSlots, groups: int,
                                mesh: Optional[Mesh]):
    """The jitted program for these static settings (cached); its params must be in the sampling layout on
    ``mesh`` (``sampling_layout.to_sampling_layout``), rows split over the mesh's rollout groups."""
    function = functools.partial(
        _generate_continuous, config=config, sampling=sampling, max_new_tokens=max_new_tokens, stop_ids=stop_ids,
        pad_id=pad_id, decode=decode, groups=groups, mesh=mesh,
    )
    if mesh is None:
        return jax.jit(function, compiler_options=decode_compiler_options())
    rows_2d, rows_1d = rollout_rows(mesh, 2), rollout_rows(mesh, 1)
    in_shardings = (sampling_param_shardings(config, mesh), rows_2d, rows_2d, sharding.replicated(mesh), rows_1d)
    return jax.jit(function, in_shardings=in_shardings, compiler_options=decode_compiler_options())


def rollout_rows(mesh: Mesh, rank: int) -> NamedSharding:
    """Rows split over the sampling mesh's rollout groups (one block of consecutive rows per group)."""
    return NamedSharding(mesh, sharding.mesh_spec(("rollout_group",) + (None,) * (rank - 1), role="sample"))


def group_axes() -> tuple[str, ...]:
    """The sampling mesh's axes that number its groups (the ``rollout_group`` rule of the ``sample`` role)."""
    return tuple(dict(sharding.axis_rules("sample"))["rollout_group"])


def group_count(mesh: Optional[Mesh]) -> int:
    return 1 if mesh is None else math.prod(mesh.shape[axis] for axis in group_axes())


def check_rows(rows: int, groups: int) -> None:
    if rows % groups:
        raise ConfigError(f"{rows} generation rows cannot be split over {groups} sampling groups; "
                          f"use a multiple of {groups}")


def kv_cache_bytes(config: LlamaConfig, rows: int, prompt_length: int, max_new_tokens: int, decode: DecodeSlots,
                   groups: int) -> int:
    """Bytes of the page pools of all groups (scratch pages included), in the compute dtype."""
    per_group = rows // groups
    slots, _ = decode.resolve(per_group)
    pages = slots * -(-(prompt_length + max_new_tokens) // decode.page_size) + 1
    itemsize = jnp.dtype(_dtype(config.compute_dtype)).itemsize
    return groups * config.num_layers * pages * math.prod(kv_pages_shape(config, 1, decode.page_size)) * itemsize
