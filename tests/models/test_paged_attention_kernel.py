"""The Pallas decode kernel over the paged KV cache (``models.paged_attention_kernel``): in interpret mode it
equals the XLA path (``paged_attention.attend_pages``) for rows of every length, pages in any order and
grouped-query heads; compiled for a compile-only v5p chip it is one Mosaic kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tulu_jax.models.paged_attention import attend_pages
from tulu_jax.models.paged_attention_kernel import attend_pages_kernel
from tulu_jax.planning.devices import libtpu_available


def random_cache(rows=4, kv_heads=2, groups=3, head_dim=16, page_size=4, pages_per_row=5, seed=0):
    rng = np.random.default_rng(seed)
    pages = rows * pages_per_row + 1  # the last one is the scratch page: never in a row's filled columns
    cache = jnp.asarray(rng.standard_normal((pages, 2 * kv_heads, page_size, head_dim)), jnp.float32)
    table = jnp.asarray(rng.permutation(pages - 1).reshape(rows, pages_per_row), jnp.int32)
    q = jnp.asarray(rng.standard_normal((rows, 1, kv_heads, groups, head_dim)), jnp.float32)
    return q, cache, table


@pytest.mark.parametrize("lengths", [(1, 4, 5, 20), (3, 17, 8, 12)])
def test_the_kernel_equals_the_xla_path_in_interpret_mode(lengths):
    q, cache, table = random_cache()
    kv_lengths = jnp.asarray(lengths, jnp.int32)  # one token, a full page, a page and one, every page
    expected = attend_pages(q, cache, table, kv_lengths, block_pages=2)
    got = attend_pages_kernel(q, cache, table, kv_lengths, interpret=True)
    assert got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=2e-6, rtol=2e-6)


def test_pages_past_a_rows_length_are_never_read():
    q, cache, table = random_cache(seed=1)
    kv_lengths = jnp.asarray([2, 6, 9, 13], jnp.int32)
    before = attend_pages_kernel(q, cache, table, kv_lengths, interpret=True)
    page_size = cache.shape[2]
    poisoned = cache
    for row, length in enumerate(np.asarray(kv_lengths)):
        for column in range(-(-int(length) // page_size), table.shape[1]):
            poisoned = poisoned.at[table[row, column]].set(jnp.nan)
    after = attend_pages_kernel(q, poisoned, table, kv_lengths, interpret=True)
    np.testing.assert_array_equal(np.asarray(after), np.asarray(before))


@pytest.mark.skipif(not libtpu_available(), reason="libtpu (a test extra) compiles for TPU")
def test_the_kernel_compiles_for_a_v5p_chip_as_one_mosaic_call():
    from tulu_jax.planning.chips import parse_topology
    from tulu_jax.planning.devices import topology_devices

    chip = Mesh(np.array(topology_devices(parse_topology("v5p-8"))[:1]), ("chip",))
    one = NamedSharding(chip, PartitionSpec())
    rows, kv_heads, groups, head_dim, page_size, pages_per_row = 16, 2, 4, 128, 16, 160  # 8B, tensor 4
    arguments = (jax.ShapeDtypeStruct((rows, 1, kv_heads, groups, head_dim), jnp.bfloat16, sharding=one),
                 jax.ShapeDtypeStruct((rows * pages_per_row + 1, 2 * kv_heads, page_size, head_dim), jnp.bfloat16,
                                      sharding=one),
                 jax.ShapeDtypeStruct((rows, pages_per_row), jnp.int32, sharding=one),
                 jax.ShapeDtypeStruct((rows,), jnp.int32, sharding=one))
    with jax.set_mesh(chip):
        text = jax.jit(lambda *a: attend_pages_kernel(*a, interpret=False)).lower(*arguments).compile().as_text()
    assert text.count("custom-call(") == 1 and "tpu_custom_call" in text


def test_idle_rows_give_zeros():
    q, cache, table = random_cache(seed=2)
    got = attend_pages_kernel(q, cache, table, jnp.asarray([0, 3, 0, 7], jnp.int32), interpret=True)
    assert np.all(np.isfinite(np.asarray(got))) and not np.any(np.asarray(got)[[0, 2]])


def test_the_continuous_sampler_decodes_with_the_kernel_over_a_tensor_split_group(monkeypatch):
    """``model.attention: splash`` (what ``auto`` is on TPU) makes each decode step of the continuous sampler call
    the kernel (interpret mode here) per chip of a tensor-2 group, inside the sampler's shard_map over the
    groups; its greedy tokens equal the XLA path's row for row."""
    import dataclasses

    from tests.generation.test_continuous import CONFIG, NEW, PROMPT, STOPS
    from tulu_jax import sharding
    from tulu_jax.generation import SamplingConfig, continuous, sampling_layout
    from tulu_jax.models import init_params
    from tulu_jax.models import paged_attention_kernel

    calls = []
    original = paged_attention_kernel.attend_pages_kernel
    monkeypatch.setattr(paged_attention_kernel, "attend_pages_kernel",
                        lambda q, *rest, **options: calls.append(q.shape) or original(q, *rest, **options))
    params = init_params(CONFIG, jax.random.PRNGKey(0))
    rows = 16
    rng = np.random.default_rng(0)
    ids, mask = np.zeros((rows, PROMPT), np.int32), np.zeros((rows, PROMPT), np.int32)
    for row, length in enumerate(rng.integers(1, PROMPT + 1, rows)):
        ids[row, PROMPT - length:] = rng.integers(1, CONFIG.vocab_size, length)
        mask[row, PROMPT - length:] = 1
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))
    tokens = {}
    for attention in ("xla", "splash"):
        config = dataclasses.replace(CONFIG, attention=attention)
        sample_mesh = sampling_layout.sample_mesh_for(mesh, config, 2)
        function = continuous.compiled_continuous_sampler(
            sampling_layout.sampling_model(config), SamplingConfig(temperature=0.0), NEW, STOPS, 0,
            continuous.DecodeSlots(), continuous.group_count(sample_mesh), sample_mesh)
        arguments = (sampling_layout.to_sampling_layout(params, config, sample_mesh), jnp.asarray(ids),
                     jnp.asarray(mask), jax.random.PRNGKey(7), jnp.full((rows,), NEW, jnp.int32))
        with sharding.activate(sample_mesh, "sample"):
            out = function(*arguments)
        tokens[attention] = np.asarray(out.tokens)
    # traced once per layer, on one chip's share: its rows, and one of the two KV heads
    assert len(calls) == CONFIG.num_layers and calls[0][2] == CONFIG.num_kv_heads // 2
    np.testing.assert_array_equal(tokens["splash"], tokens["xla"])
