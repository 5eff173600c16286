"""Grouped-query softmax attention, and a causal variant that skips the key blocks no query can see.

Shapes: queries ``[batch, length, kv_heads, groups, head_dim]``, keys/values ``[batch, slots, kv_heads,
head_dim]`` (a KV cache is laid out differently, see :func:`attend_cache`); each KV head serves its group
of query heads without copying K/V. Scores and softmax run in float32. A query at cache slot ``s`` sees key
slots ``<= s`` of its own segment (segment id 0 = padding).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Finite, so rows whose keys are all masked (padding queries) give a uniform softmax instead of NaN.
MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)

# Queries are split into blocks of at least this many positions when a whole sequence is attended at once.
MIN_QUERY_BLOCK = 128
MAX_QUERY_BLOCKS = 8


def attend(q, k, v, query_slots, query_segment_ids, key_segment_ids) -> jnp.ndarray:
    """Attention of ``q`` (at cache slots ``query_slots [length]``) over all of ``k``/``v``: ``[b, l, kvh, g, d]``."""
    scores = jnp.einsum("blkgd,bskd->bkgls", q, k.astype(q.dtype))
    weights = _masked_softmax(scores, q.shape[-1], query_slots, query_segment_ids, key_segment_ids).astype(q.dtype)
    return jnp.einsum("bkgls,bskd->blkgd", weights, v.astype(q.dtype))


def attend_cache(q, k, v, query_slots, query_segment_ids, key_segment_ids) -> jnp.ndarray:
    """:func:`attend` over a KV cache: keys ``[batch, kv_heads, slots, head_dim]``, values ``[batch, kv_heads,
    head_dim, slots]``.

    In these layouts both products of a decoding step contract the minor dimension of the cache with its
    batch dimensions (batch, kv_heads) leading, so the cache is read where it is. With slots before heads,
    XLA's CPU backend transposed every layer's whole cache at every step, and with values slots-major it
    ran the value product as a slow transposed matmul (decode step 43 -> 27 ms on the small preset).
    """
    k = k.astype(q.dtype)
    # One matrix-vector product per query head of a group: faster on CPU than one batched matmul with
    # the group as its (two-row) dimension.
    scores = jnp.stack([jnp.einsum("blkd,bksd->bkls", q[:, :, :, group], k) for group in range(q.shape[3])], axis=2)
    weights = _masked_softmax(scores, q.shape[-1], query_slots, query_segment_ids, key_segment_ids).astype(q.dtype)
    v = v.astype(q.dtype)
    return jnp.stack([jnp.einsum("bkls,bkds->blkd", weights[:, :, group], v) for group in range(q.shape[3])], axis=3)


def _masked_softmax(scores, head_dim: int, query_slots, query_segment_ids, key_segment_ids) -> jnp.ndarray:
    """Scaled float32 softmax of ``scores [b, kvh, g, length, slots]`` over the keys each query may see."""
    scores = scores.astype(jnp.float32) * (head_dim**-0.5)
    causal = query_slots[:, None] >= jnp.arange(scores.shape[-1])[None, :]  # [length, slots]
    same_segment = query_segment_ids[:, :, None] == key_segment_ids[:, None, :]  # [batch, length, slots]
    allowed = causal[None] & same_segment
    scores = jnp.where(allowed[:, None, None], scores, MASK_VALUE)
    return jax.nn.softmax(scores, axis=-1)


def query_blocks(length: int) -> int:
    """How many equal query blocks a ``length``-long causal self-attention is split into (1 = unsplit)."""
    blocks = min(MAX_QUERY_BLOCKS, length // MIN_QUERY_BLOCK)
    while blocks > 1 and length % blocks:
        blocks -= 1
    return max(blocks, 1)


def causal_self_attend(q, k, v, segment_ids) -> jnp.ndarray:
    """Self-attention of a whole sequence (query i at slot i). Query block j only meets key blocks 0..j, so the
    score and value matmuls do about (n+1)/2n of the full work for n blocks; the result equals :func:`attend`."""
    length = q.shape[1]
    blocks = query_blocks(length)
    size = length // blocks
    outputs = []
    for block in range(blocks):
        start, end = block * size, (block + 1) * size
        outputs.append(attend(q[:, start:end], k[:, :end], v[:, :end], jnp.arange(start, end),
                              segment_ids[:, start:end], segment_ids[:, :end]))
    return outputs[0] if blocks == 1 else jnp.concatenate(outputs, axis=1)
