"""Decoding with model.attention=splash reads only the filled part of the KV cache and equals today's path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.generation import SamplingConfig, generate, left_pad
from tulu_jax.models.attention import attend_cache
from tulu_jax.models.decode_attention import attend_filled_cache


def cache_inputs(filled, slots=50, length=1, seed=0):
    """A cache of ``slots`` slots whose first ``filled`` hold rows left-padded by 0, 3, 9 and ``filled - 2``
    slots (the last row has two real tokens), queried by ``length`` new tokens ending at slot ``filled - 1``."""
    rng = np.random.default_rng(seed)
    batch, kv_heads, groups, head_dim = 4, 2, 3, 16
    q = jnp.asarray(rng.normal(size=(batch, length, kv_heads, groups, head_dim)), jnp.float32)
    keys = rng.normal(size=(batch, kv_heads, slots, head_dim))
    values = rng.normal(size=(batch, kv_heads, head_dim, slots))
    key_segments = np.zeros((batch, slots), np.int32)
    for row, pads in enumerate((0, 3, 9, filled - 2)):
        key_segments[row, pads:filled] = 1
    query_slots = jnp.arange(filled - length, filled)
    query_segments = jnp.asarray(key_segments[:, filled - length:filled])  # pads query pads, as in a prefill
    return q, keys, values, query_slots, query_segments, jnp.asarray(key_segments)


@pytest.mark.parametrize("filled, length", [(12, 1), (16, 1), (17, 1), (50, 1), (20, 5)])
def test_filled_cache_attention_equals_whole_cache_attention(filled, length):
    q, keys, values, query_slots, query_segments, key_segments = cache_inputs(filled, length=length)
    want = attend_cache(q, jnp.asarray(keys), jnp.asarray(values), query_slots, query_segments, key_segments)
    # Blocks of 16 slots over a 50-slot cache: a last block that overhangs the cache, and a fill that ends
    # inside a block or on its border.
    got = attend_filled_cache(q, jnp.asarray(keys), jnp.asarray(values), query_slots, query_segments,
                              key_segments, filled=jnp.int32(filled), block=16)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)
    # Slots past the filled blocks are never read: NaNs there do not reach the result.
    first_unread = -(-filled // 16) * 16
    keys[:, :, first_unread:], values[..., first_unread:] = np.nan, np.nan
    unread = attend_filled_cache(q, jnp.asarray(keys), jnp.asarray(values), query_slots, query_segments,
                                 key_segments, filled=jnp.int32(filled), block=16)
    np.testing.assert_array_equal(np.asarray(unread), np.asarray(got))


def test_generation_with_splash_decoding_equals_xla(hf_tiny, mixed_length_prompts):
    """Same next-token logits at every step (rows filled to different lengths), hence the same tokens."""
    _, config, params = hf_tiny
    ids, mask = left_pad(mixed_length_prompts, pad_id=0)
    runs = [
        generate(params, config.replace(attention=attention), ids, mask, jax.random.PRNGKey(5),
                 sampling=SamplingConfig(temperature=1.0), max_new_tokens=10, return_logits=True)
        for attention in ("xla", "splash")
    ]
    np.testing.assert_allclose(np.asarray(runs[1].logits), np.asarray(runs[0].logits), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.asarray(runs[1].tokens), np.asarray(runs[0].tokens))
