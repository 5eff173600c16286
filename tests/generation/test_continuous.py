"""The continuous-batching sampler against the static one: the same greedy tokens row for row; the same
sampled tokens whatever the slots, refill size, page size or groups; per-row limits; a page
pool that never hands one page to two rows and gets every page back; the sampling layout on a mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax import sharding
from tulu_jax.generation import SamplingConfig, continuous, generate, page_pool, sampling_layout
from tulu_jax.generation.sampler import compiled_sampler, param_shardings
from tulu_jax.models import LlamaConfig, init_params

CONFIG = LlamaConfig(vocab_size=96, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
                     max_position_embeddings=256, scan_layers=True)
ROWS, PROMPT, NEW = 8, 12, 24
STOPS = tuple(range(3, 96, 11))  # frequent enough that rows stop at different lengths


@pytest.fixture(scope="module")
def params():
    return init_params(CONFIG, jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def prompts():
    rng = np.random.default_rng(0)
    ids, mask = np.zeros((ROWS, PROMPT), np.int32), np.zeros((ROWS, PROMPT), np.int32)
    for row, length in enumerate(rng.integers(1, PROMPT + 1, ROWS)):
        ids[row, PROMPT - length:] = rng.integers(1, CONFIG.vocab_size, length)
        mask[row, PROMPT - length:] = 1
    return jnp.asarray(ids), jnp.asarray(mask)


def run_continuous(params, prompts, sampling, decode, groups=1, limits=None):
    model = sampling_layout.sampling_model(CONFIG)
    function = continuous.compiled_continuous_sampler(model, sampling, NEW, STOPS, 0, decode, groups, None)
    limits = jnp.full((ROWS,), NEW, jnp.int32) if limits is None else jnp.asarray(limits, jnp.int32)
    return function(sampling_layout.to_sampling_layout(params, CONFIG, None), *prompts, jax.random.PRNGKey(7), limits)


def run_static(params, prompts, sampling):
    return compiled_sampler(CONFIG, sampling, NEW, STOPS, 0, False, None)(params, *prompts, jax.random.PRNGKey(7))


def test_greedy_equals_the_static_sampler_row_for_row(params, prompts):
    sampling = SamplingConfig(temperature=0.0)
    static = run_static(params, prompts, sampling)
    paged = run_continuous(params, prompts, sampling, continuous.DecodeSlots(slots=3, page_size=4, refill=2))
    lengths = np.asarray(static.lengths)
    assert len(set(lengths.tolist())) > 2  # rows really stop at different steps
    np.testing.assert_array_equal(np.asarray(paged.tokens), np.asarray(static.tokens))
    np.testing.assert_array_equal(np.asarray(paged.lengths), lengths)
    np.testing.assert_array_equal(np.asarray(paged.stopped), np.asarray(static.stopped))
    np.testing.assert_allclose(np.asarray(paged.logprobs), np.asarray(static.logprobs), atol=2e-5)


@pytest.mark.parametrize("decode,groups", [(continuous.DecodeSlots(slots=1, page_size=16, refill=1), 1),
                                           (continuous.DecodeSlots(slots=8, page_size=3, refill=8), 1),
                                           (continuous.DecodeSlots(slots=2, page_size=5, refill=1), 2),
                                           (continuous.DecodeSlots(), 4)])
def test_a_rows_tokens_do_not_depend_on_its_slot_or_neighbours(params, prompts, decode, groups):
    sampling = SamplingConfig(temperature=1.0)
    reference = run_continuous(params, prompts, sampling, continuous.DecodeSlots(slots=4, page_size=4, refill=2))
    other = run_continuous(params, prompts, sampling, decode, groups)
    np.testing.assert_array_equal(np.asarray(other.tokens), np.asarray(reference.tokens))
    assert int(other.peak_pages) <= decode.resolve(ROWS // groups)[0] * -(-(PROMPT + NEW) // decode.page_size)


def test_fewer_slots_take_more_steps_and_fewer_pages(params, prompts):
    sampling = SamplingConfig(temperature=0.0)
    one = run_continuous(params, prompts, sampling, continuous.DecodeSlots(slots=1, page_size=4, refill=1))
    eight = run_continuous(params, prompts, sampling, continuous.DecodeSlots(slots=8, page_size=4, refill=8))
    assert int(one.steps) == int(np.asarray(one.lengths).sum())  # one row at a time, one token per step
    assert int(eight.steps) == int(np.asarray(eight.lengths).max())
    assert int(one.peak_pages) < int(eight.peak_pages)


def test_rows_stop_at_their_own_limits(params, prompts):
    limits = np.array([1, 2, 3, 24, 5, 6, 7, 8], np.int32)
    out = run_continuous(params, prompts, SamplingConfig(temperature=1.0), continuous.DecodeSlots(slots=2), 1, limits)
    lengths = np.asarray(out.lengths)
    assert (lengths <= limits).all() and (lengths >= 1).all()
    tokens = np.asarray(out.tokens)
    assert all((tokens[row, length:] == 0).all() for row, length in enumerate(lengths))


def test_the_page_pool_never_lends_a_page_twice_and_gets_all_back():
    pool = page_pool.empty_pool(slots=3, pages_per_row=4)
    pool = page_pool.take(pool, jnp.arange(3), jnp.zeros(3, jnp.int32), jnp.array([2, 1, 3], jnp.int32))
    table = np.asarray(pool.table)
    lent = table[table < pool.scratch]
    assert len(lent) == 6 and len(set(lent.tolist())) == 6 and int(pool.free_count) == 6
    pool = page_pool.take(pool, jnp.arange(3), jnp.array([2, 1, 3]), jnp.array([1, 0, 1], jnp.int32))
    lent = np.asarray(pool.table)[np.asarray(pool.table) < pool.scratch]
    assert len(set(lent.tolist())) == 8 and int(pool.peak) == 8
    pool = page_pool.give_back(pool, jnp.array([True, False, True]), jnp.array([3, 1, 4], jnp.int32))
    assert int(pool.free_count) == 11 and (np.asarray(pool.table)[[0, 2]] == pool.scratch).all()
    pool = page_pool.give_back(pool, jnp.array([False, True, False]), jnp.array([0, 1, 0], jnp.int32))
    assert sorted(np.asarray(pool.free).tolist()) == list(range(12)) and int(pool.free_count) == 12


def test_generate_on_a_mesh_uses_the_sampling_layout_and_matches_one_device(params, prompts):
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))
    sampling = SamplingConfig(temperature=1.0)
    on_mesh = generate(params, CONFIG, *prompts, jax.random.PRNGKey(3), sampling=sampling, max_new_tokens=NEW,
                       stop_ids=STOPS, mesh=mesh)
    alone = generate(params, CONFIG, *prompts, jax.random.PRNGKey(3), sampling=sampling, max_new_tokens=NEW,
                     stop_ids=STOPS)
    np.testing.assert_array_equal(np.asarray(on_mesh.tokens), np.asarray(alone.tokens))
    sample_mesh = sampling_layout.sample_mesh_for(mesh, CONFIG)
    assert dict(sample_mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    trained = jax.device_put(params, param_shardings(CONFIG, mesh))
    placed = sampling_layout.to_sampling_layout(trained, CONFIG, sample_mesh)
    kernel = placed["layers_0"]["mlp"]["gate_proj"]["kernel"]
    assert kernel.sharding.shard_shape(kernel.shape) == (CONFIG.hidden_size, CONFIG.intermediate_size // 2)


def test_group_size_grows_until_the_weights_fit():
    model = LlamaConfig(vocab_size=128256, hidden_size=16384, intermediate_size=53248, num_layers=126, num_heads=128,
                        num_kv_heads=8, compute_dtype="bfloat16")  # Llama 3.1 405B: 811 GB of bf16 weights
    free = 80e9  # a v5p chip's HBM beside a 405B learner's share on 1,024 chips
    assert sampling_layout.group_size(model, 1024, 4, free) == 32
    assert sampling_layout.group_size(model, 1024, 4, None) == 4


def test_the_benchmark_workload_is_skewed_as_rl_responses_are():
    from benchmarks.continuous_batching import workload

    limits = workload(64, 256)
    assert 0.05 <= (limits == 256).mean() <= 0.10
    assert (limits <= 256 * 3 // 10).mean() >= 0.85 and (limits >= 256 // 10).all()


def test_a_prefill_projects_only_each_rows_next_token_onto_the_vocabulary(params, prompts):
    # Regression (the refill defect on 8 CPU devices): the prefill projected every prompt token onto the
    # vocabulary ([rows, prompt_length, vocab]) and kept one; inside the loop's conditional that projection came
    # out wrong in its first vocabulary columns on 8 concurrently running CPU devices (SmolLM2, 30 layers), so
    # refilled rows could start from a wrong token. Only each row's last prompt token is projected now.
    model = sampling_layout.sampling_model(CONFIG)
    decode = continuous.DecodeSlots(slots=2, page_size=4, refill=1)
    function = continuous.compiled_continuous_sampler(model, SamplingConfig(temperature=0.0), NEW, STOPS, 0, decode, 1,
                                                      None)
    text = function.lower(sampling_layout.to_sampling_layout(params, CONFIG, None), *prompts, jax.random.PRNGKey(7),
                          jnp.full((ROWS,), NEW, jnp.int32)).as_text()
    assert f"x{PROMPT}x{CONFIG.vocab_size}xf32>" not in text
    assert f"x{CONFIG.vocab_size}xf32>" in text


def test_refilled_slots_on_a_mesh_give_one_devices_tokens(params, prompts):
    # 8 sampling groups of one device, 2 rows each through 1 slot: every group refills its slot once.
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=-1, tensor=1))
    sample_mesh = sampling_layout.sample_mesh_for(mesh, CONFIG)
    groups = continuous.group_count(sample_mesh)
    rows = 2 * groups
    ids, mask = (jnp.concatenate([array, array[::-1]]) for array in prompts)
    decode = sampling_layout.fitted_slots(continuous.DecodeSlots(slots=1, page_size=4, refill=1), CONFIG, sample_mesh,
                                          rows // groups, PROMPT + NEW)
    assert decode.resolve(rows // groups)[0] == 1  # no longer raised to every row of the group
    model = sampling_layout.sampling_model(CONFIG)
    sampling = SamplingConfig(temperature=0.0)
    limits = jnp.full((rows,), NEW, jnp.int32)
    alone = continuous.compiled_continuous_sampler(model, sampling, NEW, STOPS, 0, decode, 1, None)(
        sampling_layout.to_sampling_layout(params, CONFIG, None), ids, mask, jax.random.PRNGKey(7), limits)
    function = continuous.compiled_continuous_sampler(model, sampling, NEW, STOPS, 0, decode, groups, sample_mesh)
    placed = sampling_layout.to_sampling_layout(params, CONFIG, sample_mesh)
    with sharding.activate(sample_mesh, "sample"):
        on_mesh = function(placed, ids, mask, jax.random.PRNGKey(7), limits)
    np.testing.assert_array_equal(np.asarray(on_mesh.tokens), np.asarray(alone.tokens))
    np.testing.assert_allclose(np.asarray(on_mesh.logprobs), np.asarray(alone.logprobs), atol=2e-5)
    assert int(on_mesh.steps) > NEW  # the slot really took a second row


def test_automatic_slots_on_a_mesh_follow_the_free_memory():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))
    sample_mesh = sampling_layout.sample_mesh_for(mesh, CONFIG)
    explicit = sampling_layout.fitted_slots(continuous.DecodeSlots(slots=2), CONFIG, sample_mesh, 6, 40)
    assert explicit.resolve(6)[0] == 2
    unknown = sampling_layout.fitted_slots(continuous.DecodeSlots(), CONFIG, sample_mesh, 6, 40)  # CPU: no HBM figure
    assert unknown.resolve(6)[0] == 2  # a quarter of the rows, refilled
    roomy = sampling_layout.fitted_slots(continuous.DecodeSlots(), CONFIG, sample_mesh, 6, 40, free_hbm_bytes=1e9)
    assert roomy.resolve(6)[0] == 6
