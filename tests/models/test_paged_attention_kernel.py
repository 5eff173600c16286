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
