"""Generation on a mesh of 8 forced CPU devices gives the same tokens and log-probs as on one device."""

import jax
import numpy as np
import pytest

from tulu_jax import sharding
from tulu_jax.generation import SamplingConfig, generate, left_pad

SAMPLING = SamplingConfig(temperature=1.0, top_k=40)


@pytest.fixture(scope="module")
def eight_prompts(mixed_length_prompts):
    return left_pad(mixed_length_prompts * 2, pad_id=0)


@pytest.fixture(scope="module")
def single_device_output(hf_tiny, eight_prompts):
    _, config, params = hf_tiny
    ids, mask = eight_prompts
    return generate(params, config, ids, mask, jax.random.PRNGKey(5), sampling=SAMPLING, max_new_tokens=16, stop_ids=[1])


@pytest.mark.parametrize("shape", [(2, 2, 2), pytest.param((1, 8, 1), marks=pytest.mark.slow)], ids=str)
def test_sharded_generation_equals_single_device(hf_tiny, eight_prompts, single_device_output, shape):
    assert jax.device_count() == 8
    _, config, params = hf_tiny
    ids, mask = eight_prompts
    mesh = sharding.make_mesh(sharding.MeshConfig(*shape))
    out = generate(
        params, config, ids, mask, jax.random.PRNGKey(5), sampling=SAMPLING, max_new_tokens=16, stop_ids=[1], mesh=mesh
    )
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(single_device_output.tokens))
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(single_device_output.logprobs), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(out.lengths), np.asarray(single_device_output.lengths))
    assert out.tokens.sharding.spec[0] is not None or len(out.tokens.sharding.device_set) == 8
