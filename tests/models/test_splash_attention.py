"""Splash attention (Pallas interpret mode on CPU) equals the XLA attention path: values and gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.models.attention import causal_self_attend
from tulu_jax.models.splash import block_sizes, splash_self_attend, tpu_generation
from tulu_jax.sharding import MeshConfig, activate, make_mesh

TILE = 128  # forced tile size: several tiles per row at test lengths


def packed_segments(length: int) -> jnp.ndarray:
    """Row 0: three segments, the second crossing the tile boundary at 128, then a padding tail (id 0).
    Row 1: one segment over the whole row."""
    row = np.zeros(length, np.int32)
    row[:100], row[100:170], row[170:length - 20] = 1, 2, 3
    return jnp.asarray(np.stack([row, np.ones(length, np.int32)]))


def inputs(length, kv_heads, groups, head_dim, dtype, seed=0, value_scale=1.0, cotangent_scale=1.0):
    rng = np.random.default_rng(seed)
    batch = 2
    q = rng.normal(size=(batch, length, kv_heads, groups, head_dim))
    k = rng.normal(size=(batch, length, kv_heads, head_dim))
    v = value_scale * rng.normal(size=(batch, length, kv_heads, head_dim))
    cotangent = cotangent_scale * rng.normal(size=(batch, length, kv_heads, groups, head_dim))
    return tuple(jnp.asarray(x, dtype) for x in (q, k, v)), jnp.asarray(cotangent, jnp.float32)


def values_and_grads(attend, qkv, cotangent, segments):
    def loss(q, k, v):
        return jnp.sum(attend(q, k, v, segments).astype(jnp.float32) * cotangent)

    out = jax.jit(lambda *a: attend(*a, segments))(*qkv)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*qkv)
    return [np.asarray(x, np.float64) for x in (out, *grads)]


def splash_tiled(q, k, v, segments, mesh=None):
    return splash_self_attend(q, k, v, segments, mesh=mesh, block_q=TILE, block_kv=TILE, interpret=True)


# (groups = query heads per KV head, length): 256 is a whole number of tiles, 200 pads to 256.
@pytest.mark.parametrize("groups, length", [(1, 200), (4, 256), (8, 200)])
def test_splash_equals_xla_float32(groups, length):
    qkv, cotangent = inputs(length, kv_heads=2, groups=groups, head_dim=64, dtype=jnp.float32)
    segments = packed_segments(length)
    got = values_and_grads(splash_tiled, qkv, cotangent, segments)
    want = values_and_grads(causal_self_attend, qkv, cotangent, segments)
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=0, err_msg=name)


@pytest.mark.parametrize("groups, length", [(4, 200), (8, 256)])
def test_splash_equals_xla_bfloat16(groups, length):
    # Values and cotangents scaled so every result is below 0.25, where a bfloat16 step is under 1e-3: the
    # 2e-3 bound then measures the kernels, not the rounding of the last bit. Two more checks keep their teeth
    # on the smaller dq and dk: the difference stays within 1% of each tensor's largest entry, and splash is
    # no further than the XLA path from float32 attention on the same (bfloat16) inputs.
    qkv, cotangent = inputs(length, kv_heads=2, groups=groups, head_dim=128, dtype=jnp.bfloat16, value_scale=0.06,
                            cotangent_scale=0.02)
    segments = packed_segments(length)
    got = values_and_grads(splash_tiled, qkv, cotangent, segments)
    want = values_and_grads(causal_self_attend, qkv, cotangent, segments)
    exact = values_and_grads(causal_self_attend, tuple(x.astype(jnp.float32) for x in qkv), cotangent, segments)
    for name, g, w, e in zip(("out", "dq", "dk", "dv"), got, want, exact):
        assert np.abs(e).max() < 0.25, name
        np.testing.assert_allclose(g, w, atol=2e-3, rtol=0, err_msg=name)
        np.testing.assert_allclose(g, w, atol=1e-2 * np.abs(e).max(), rtol=0, err_msg=name)
        error_splash, error_xla = np.linalg.norm(g - e), np.linalg.norm(w - e)
        assert error_splash <= 1.25 * error_xla + 1e-6 * np.linalg.norm(e), (name, error_splash, error_xla)


@pytest.mark.parametrize("kv_heads", [4, 2])  # 4: KV heads split over tensor=4; 2: each device takes one whole
def test_splash_under_a_mesh_equals_xla(kv_heads):
    mesh = make_mesh(MeshConfig(data=1, fsdp=2, tensor=4))
    qkv, cotangent = inputs(200, kv_heads=kv_heads, groups=8 // kv_heads, head_dim=64, dtype=jnp.float32, seed=1)
    segments = packed_segments(200)
    want = values_and_grads(causal_self_attend, qkv, cotangent, segments)
    with activate(mesh):
        got = values_and_grads(functools.partial(splash_tiled, mesh=mesh), qkv, cotangent, segments)
        lowered = jax.jit(lambda *a: splash_tiled(*a, segments, mesh=mesh)).lower(*qkv).as_text()
    assert "shard_map" in lowered or "sdy.manual_computation" in lowered
    for name, g, w in zip(("out", "dq", "dk", "dv"), got, want):
        np.testing.assert_allclose(g, w, atol=1e-5, rtol=0, err_msg=name)


def test_block_sizes_per_generation_and_overrides():
    assert tpu_generation("TPU v5 lite") == "v5e" and tpu_generation("TPU v5p") == "v5p"
    assert tpu_generation("TPU v6 lite") == "v6e" and tpu_generation("cpu") is None
    padded, sizes = block_sizes(4096, device_kind="TPU v6 lite")
    assert (padded, sizes.block_q, sizes.block_kv, sizes.block_kv_compute) == (4096, 512, 1024, 512)
    padded, sizes = block_sizes(4096, block_q=256, block_kv=2048, device_kind="TPU v5 lite")
    assert (sizes.block_q, sizes.block_kv, sizes.block_q_dkv, sizes.block_kv_dq) == (256, 2048, 256, 2048)
    # 1500 pads to 1536; tiles shrink to divide it instead of padding to 2048.
    padded, sizes = block_sizes(1500, device_kind="TPU v5p")
    assert padded == 1536 and 1536 % sizes.block_kv == 0 and sizes.block_kv == 768
