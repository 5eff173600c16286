"""Drawing tokens: reproducible for a seed, the softmax distribution, top-k / top-p supports, log-probs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.errors import ConfigError
from tulu_jax.generation import SamplingConfig, choose_tokens, generate, left_pad

DRAWS = 20000
# Chi-square critical values at p = 0.001 (statistical tables), by degrees of freedom.
CHI2_CRITICAL_0001 = {1: 10.828, 2: 13.816, 3: 16.266, 5: 20.515}


def draw(logits_row, sampling, seed=0):
    logits = jnp.broadcast_to(jnp.asarray(logits_row, jnp.float32), (DRAWS, len(logits_row)))
    tokens, logprobs = choose_tokens(logits, sampling, jax.random.PRNGKey(seed))
    return np.asarray(tokens), np.asarray(logprobs)


def chi_square(counts, probabilities):
    expected = DRAWS * np.asarray(probabilities)
    return float(((counts - expected) ** 2 / expected).sum())


def softmax(x):
    e = np.exp(np.asarray(x, np.float64) - np.max(x))
    return e / e.sum()


def test_draws_follow_the_softmax_distribution():
    logits = [0.3, -1.0, 2.0, 0.0, 1.1, -0.4]
    tokens, logprobs = draw(logits, SamplingConfig(temperature=1.0, top_p=1.0))
    counts = np.bincount(tokens, minlength=6)
    assert chi_square(counts, softmax(logits)) < CHI2_CRITICAL_0001[5]
    np.testing.assert_allclose(logprobs, np.log(softmax(logits))[tokens], atol=1e-5)


def test_temperature_scales_distribution_and_logprobs():
    logits = np.array([0.3, -1.0, 2.0, 0.0, 1.1, -0.4])
    tokens, logprobs = draw(logits, SamplingConfig(temperature=0.5))
    probabilities = softmax(logits / 0.5)
    assert chi_square(np.bincount(tokens, minlength=6), probabilities) < CHI2_CRITICAL_0001[5]
    np.testing.assert_allclose(logprobs, np.log(probabilities)[tokens], atol=1e-5)


def test_top_k_restricts_to_the_k_most_likely_with_renormalised_frequencies():
    logits = np.array([0.1, 2.0, -1.0, 1.5, 0.4, 1.0, -2.0, 0.0])
    tokens, logprobs = draw(logits, SamplingConfig(temperature=1.0, top_k=3))
    top3 = [1, 3, 5]
    assert set(np.unique(tokens)) == set(top3)
    counts = np.bincount(tokens, minlength=8)[top3]
    assert chi_square(counts, softmax(logits[top3])) < CHI2_CRITICAL_0001[2]
    # The log-probs stay those of the full temperature-scaled softmax, not the truncated one.
    np.testing.assert_allclose(logprobs, np.log(softmax(logits))[tokens], atol=1e-5)


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probabilities = np.array([0.05, 0.5, 0.15, 0.3])
    logits = np.log(probabilities)
    # Sorted: 0.5, 0.3, 0.15, 0.05; mass before each: 0, 0.5, 0.8, 0.95.
    tokens, _ = draw(logits, SamplingConfig(temperature=1.0, top_p=0.7))
    assert set(np.unique(tokens)) == {1, 3}
    counts = np.bincount(tokens, minlength=4)[[1, 3]]
    assert chi_square(counts, [0.5 / 0.8, 0.3 / 0.8]) < CHI2_CRITICAL_0001[1]
    tokens, _ = draw(logits, SamplingConfig(temperature=1.0, top_p=0.85))
    assert set(np.unique(tokens)) == {1, 2, 3}
    tokens, _ = draw(logits, SamplingConfig(temperature=1.0, top_p=0.2))
    assert set(np.unique(tokens)) == {1}  # the most likely token is always kept


def test_top_k_then_top_p():
    probabilities = np.array([0.4, 0.3, 0.2, 0.1])
    # Top-2 renormalised: 4/7, 3/7; a nucleus of 0.5 then keeps only the first.
    tokens, _ = draw(np.log(probabilities), SamplingConfig(temperature=1.0, top_k=2, top_p=0.5))
    assert set(np.unique(tokens)) == {0}


def test_greedy_is_argmax_with_untempered_logprob():
    logits = np.array([[0.1, 3.0, -1.0], [2.0, 0.0, 1.9]])
    tokens, logprobs = choose_tokens(jnp.asarray(logits), SamplingConfig(temperature=0.0), jax.random.PRNGKey(0))
    np.testing.assert_array_equal(tokens, [1, 0])
    np.testing.assert_allclose(logprobs, [np.log(softmax(logits[0])[1]), np.log(softmax(logits[1])[0])], atol=1e-6)


def test_generation_is_reproducible_for_a_seed_and_varies_with_it(hf_tiny, mixed_length_prompts):
    _, config, params = hf_tiny
    ids, mask = left_pad(mixed_length_prompts, pad_id=0)
    sampling = SamplingConfig(temperature=1.0, top_p=0.9)
    first = generate(params, config, ids, mask, jax.random.PRNGKey(7), sampling=sampling, max_new_tokens=16)
    again = generate(params, config, ids, mask, jax.random.PRNGKey(7), sampling=sampling, max_new_tokens=16)
    other = generate(params, config, ids, mask, jax.random.PRNGKey(8), sampling=sampling, max_new_tokens=16)
    np.testing.assert_array_equal(first.tokens, again.tokens)
    np.testing.assert_array_equal(first.logprobs, again.logprobs)
    assert not np.array_equal(first.tokens, other.tokens)


def test_invalid_sampling_settings_are_config_errors():
    with pytest.raises(ConfigError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ConfigError, match="temperature"):
        SamplingConfig(temperature=-1.0)
    with pytest.raises(ConfigError, match="top_k"):
        SamplingConfig(top_k=-2)
