"""Block-causal self-attention and the layout-friendly linear equal their plain formulations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.models.attention import attend, causal_self_attend, query_blocks
from tulu_jax.ops.linear import linear


@pytest.mark.parametrize("length, blocks", [(48, 1), (256, 2), (384, 3), (512, 4), (2048, 8), (1000, 5)])
def test_query_blocks_divide_the_length(length, blocks):
    assert query_blocks(length) == blocks
    assert length % blocks == 0


def test_block_causal_attention_equals_full_attention_with_packing_and_padding():
    rng = np.random.default_rng(0)
    batch, length, kv_heads, groups, head_dim = 2, 512, 2, 3, 16
    q = jnp.asarray(rng.normal(size=(batch, length, kv_heads, groups, head_dim)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(batch, length, kv_heads, head_dim)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(batch, length, kv_heads, head_dim)), jnp.float32)
    # Row 0: three packed segments crossing block borders; row 1: one segment then padding (id 0).
    segments = np.zeros((batch, length), np.int32)
    segments[0, :100], segments[0, 100:300], segments[0, 300:] = 1, 2, 3
    segments[1, :333] = 1
    segments = jnp.asarray(segments)

    def both(q, k, v):
        blocked = causal_self_attend(q, k, v, segments)
        full = attend(q, k, v, jnp.arange(length), segments, segments)
        return blocked, full

    blocked, full = both(q, k, v)
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(full), atol=1e-5)
    weights = jnp.asarray(rng.normal(size=full.shape), jnp.float32)
    grad_blocked = jax.grad(lambda *a: jnp.sum(causal_self_attend(*a, segments) * weights), (0, 1, 2))(q, k, v)
    grad_full = jax.grad(lambda *a: jnp.sum(attend(*a, jnp.arange(length), segments, segments) * weights),
                         (0, 1, 2))(q, k, v)
    for got, want in zip(grad_blocked, grad_full):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)


def test_linear_values_and_gradients_equal_einsum():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(3, 5, 4, 6)), jnp.float32)  # [batch, length, heads, head_dim]
    kernel = jnp.asarray(rng.normal(size=(4, 6, 7)), jnp.float32)  # [heads, head_dim, embed]

    def ours(x, kernel):
        return jnp.sum(jnp.sin(linear(x, kernel, 2)))

    def reference(x, kernel):
        return jnp.sum(jnp.sin(jnp.einsum("blhk,hkd->bld", x, kernel)))

    np.testing.assert_allclose(ours(x, kernel), reference(x, kernel), rtol=1e-6)
    for got, want in zip(jax.grad(ours, (0, 1))(x, kernel), jax.grad(reference, (0, 1))(x, kernel)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
