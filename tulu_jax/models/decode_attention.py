"""Cached attention that reads only the filled part of the KV cache (the decoding path on TPU).

``attention.attend_cache`` multiplies every query by all ``slots`` of the cache, filled or not, so a decode
step early in a long generation pays for the whole cache. Here the keys are walked in blocks of
``block`` slots up to the highest slot written so far (``filled``, the same for every row: prompts are
left-padded and all rows decode into the same slot), with a running float32 softmax (row max, row sum and
weighted values rescaled as each block arrives). Blocks past ``filled`` are never read. Rows filled to
different lengths (different amounts of left padding) differ only in their segment ids, which mask the
pads as in ``attend_cache``; the result equals it up to float32 rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tulu_jax.models.attention import MASK_VALUE

DECODE_BLOCK = 512  # slots per block: a whole number of 128-lane tiles on TPU


def attend_filled_cache(
    q: jnp.ndarray,  # [batch, length, kv_heads, groups, head_dim]
    k: jnp.ndarray,  # [batch, kv_heads, slots, head_dim]
    v: jnp.ndarray,  # [batch, kv_heads, head_dim, slots]
    query_slots: jnp.ndarray,  # [length]
    query_segment_ids: jnp.ndarray,  # [batch, length]
    key_segment_ids: jnp.ndarray,  # [batch, slots]
    filled: jnp.ndarray,  # scalar: slots [0, filled) have been written
    block: int = DECODE_BLOCK,
) -> jnp.ndarray:
    """:func:`attention.attend_cache` over the cache's first ``filled`` slots only: ``[b, l, kvh, g, d]``."""
    batch, length, kv_heads, groups, head_dim = q.shape
    slots = k.shape[2]
    block = min(block, slots)
    k = k.astype(q.dtype)
    v = v.astype(q.dtype)
    scale = head_dim**-0.5

    def one_block(index, carry):
        row_max, row_sum, weighted = carry
        first = index * block
        # The last block may run past the cache: slicing clamps its start, and slots before `first` (already
        # counted by the previous block) are masked out.
        start = jnp.minimum(first, slots - block)
        key_slots = start + jnp.arange(block)
        keys = jax.lax.dynamic_slice_in_dim(k, start, block, axis=2)  # [b, kvh, block, d]
        values = jax.lax.dynamic_slice_in_dim(v, start, block, axis=3)  # [b, kvh, d, block]
        segments = jax.lax.dynamic_slice_in_dim(key_segment_ids, start, block, axis=1)  # [b, block]
        scores = jnp.einsum("blkgd,bksd->bkgls", q, keys, preferred_element_type=jnp.float32) * scale
        allowed = (query_slots[:, None] >= key_slots[None, :]) & (key_slots >= first)[None, :]  # [l, block]
        allowed = allowed[None] & (query_segment_ids[:, :, None] == segments[:, None, :])  # [b, l, block]
        scores = jnp.where(allowed[:, None, None], scores, MASK_VALUE)
        new_max = jnp.maximum(row_max, scores.max(axis=-1))
        correction = jnp.exp(row_max - new_max)
        probabilities = jnp.exp(scores - new_max[..., None])
        row_sum = row_sum * correction + probabilities.sum(axis=-1)
        update = jnp.einsum("bkgls,bkds->bkgld", probabilities.astype(q.dtype), values,
                            preferred_element_type=jnp.float32)
        return new_max, row_sum, weighted * correction[..., None] + update

    carry = (
        jnp.full((batch, kv_heads, groups, length), -jnp.inf, jnp.float32),
        jnp.zeros((batch, kv_heads, groups, length), jnp.float32),
        jnp.zeros((batch, kv_heads, groups, length, head_dim), jnp.float32),
    )
    blocks = (jnp.minimum(filled, slots) + block - 1) // block
    _, row_sum, weighted = jax.lax.fori_loop(0, blocks, one_block, carry)
    out = (weighted / row_sum[..., None]).astype(q.dtype)  # [b, kvh, g, l, d]
    return out.transpose(0, 3, 1, 2, 4)
