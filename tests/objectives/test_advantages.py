import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.errors import ConfigError
from tulu_jax.objectives import gae, grpo_advantages, kl_estimate, masked_whiten, per_token_rewards

from . import numpy_reference as ref


def test_gae_on_hand_computed_sequences():
    # gamma 0.9, lambda 0.5; the 4th token is padding whose reward and value must be ignored.
    #   t=2: delta = 1.0 + 0.9*0   - 0.3 = 0.7      A = 0.7
    #   t=1: delta = -0.2 + 0.9*0.3 - 0.4 = -0.33   A = -0.33 + 0.45*0.7    = -0.015
    #   t=0: delta = 0.1 + 0.9*0.4 - 0.5 = -0.04    A = -0.04 + 0.45*-0.015 = -0.04675
    rewards = jnp.array([[0.1, -0.2, 1.0, 5.0]])
    values = jnp.array([[0.5, 0.4, 0.3, 9.0]])
    mask = jnp.array([[1, 1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    np.testing.assert_allclose(advantages, [[-0.04675, -0.015, 0.7, 0.0]], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(returns, [[0.45325, 0.385, 1.0, 0.0]], rtol=1e-6, atol=1e-7)

    # Tülu 3 settings, gamma 1 and lambda 0.95, score 10 on the last token:
    #   t=2: delta = 10 - 3 = 7           A = 7
    #   t=1: delta = 0 + 3 - 2 = 1        A = 1 + 0.95*7    = 7.65
    #   t=0: delta = 0 + 2 - 1 = 1        A = 1 + 0.95*7.65 = 8.2675
    advantages, returns = gae(jnp.array([[0.0, 0.0, 10.0]]), jnp.array([[1.0, 2.0, 3.0]]), jnp.ones((1, 3)), 1.0, 0.95)
    np.testing.assert_allclose(advantages, [[8.2675, 7.65, 7.0]], rtol=1e-6)
    np.testing.assert_allclose(returns, [[9.2675, 9.65, 10.0]], rtol=1e-6)


def test_gae_random_rows_match_the_loop_and_padding_does_not_leak():
    rng = np.random.default_rng(0)
    rewards, values = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    lengths = [9, 4, 1, 0, 6]
    mask = (np.arange(9)[None, :] < np.array(lengths)[:, None]).astype(np.float64)
    advantages, returns = gae(jnp.asarray(rewards, jnp.float32), jnp.asarray(values, jnp.float32), mask, 1.0, 0.95)
    expected_advantages, expected_returns = ref.gae(rewards, values, mask, 1.0, 0.95)
    np.testing.assert_allclose(advantages, expected_advantages, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(returns, expected_returns, rtol=1e-5, atol=1e-6)
    # Changing anything at padded positions changes nothing.
    noisy = np.where(mask == 0, 1e3, 0.0)
    advantages_noisy, returns_noisy = gae(rewards + noisy, values - noisy, mask, 1.0, 0.95)
    np.testing.assert_allclose(advantages_noisy, advantages, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(returns_noisy, returns, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_estimators_match_numpy(kind):
    rng = np.random.default_rng(1)
    policy, reference = -rng.exponential(size=(3, 7)), -rng.exponential(size=(3, 7))
    policy, reference = policy.astype(np.float32), reference.astype(np.float32)
    expected = ref.kl(policy, reference, kind)
    np.testing.assert_allclose(kl_estimate(policy, reference, kind), expected, rtol=1e-6, atol=1e-6)


def test_unknown_kl_estimator_is_a_config_error():
    with pytest.raises(ConfigError, match="k1, k2, k3"):
        kl_estimate(jnp.zeros(2), jnp.zeros(2), "k4")


def test_per_token_rewards_put_the_score_on_the_last_response_token():
    rng = np.random.default_rng(2)
    kl = rng.normal(size=(3, 6)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    scores = np.array([10.0, -10.0, 10.0])
    rewards = per_token_rewards(kl, scores, mask, beta=0.05)
    np.testing.assert_allclose(rewards, ref.per_token_rewards(kl, scores, mask, 0.05), rtol=1e-6, atol=1e-7)
    assert float(rewards[0, 3]) == pytest.approx(10.0 - 0.05 * kl[0, 3], rel=1e-6)
    assert np.all(np.asarray(rewards[2]) == 0)  # no response, no score


def test_masked_whiten_uses_valid_tokens_only():
    rng = np.random.default_rng(3)
    values = rng.normal(2.0, 3.0, size=(4, 8))
    mask = (rng.random((4, 8)) < 0.6).astype(np.float64)
    whitened = masked_whiten(jnp.asarray(values, jnp.float32), mask)
    np.testing.assert_allclose(whitened, ref.whiten(values, mask), rtol=1e-5, atol=1e-6)
    valid = np.asarray(whitened)[mask != 0]
    assert abs(valid.mean()) < 1e-5 and abs(valid.std(ddof=1) - 1) < 1e-4
    # Masked entries neither take part nor survive.
    garbage = np.where(mask == 0, 1e4, values)
    np.testing.assert_allclose(masked_whiten(jnp.asarray(garbage, jnp.float32), mask), whitened, rtol=1e-6, atol=1e-6)
    # shift_mean=False keeps the mean.
    unshifted = np.asarray(masked_whiten(jnp.asarray(values, jnp.float32), mask, shift_mean=False))[mask != 0]
    np.testing.assert_allclose(unshifted.mean(), values[mask != 0].mean(), rtol=1e-5)


def test_group_normalisation_by_hand_and_against_numpy():
    # Groups of 2: (0, 10) -> mean 5, sample std 7.0710678 -> +-0.70710678; population std 5 -> +-1.
    scores = jnp.array([0.0, 10.0, 10.0, 10.0])
    np.testing.assert_allclose(grpo_advantages(scores, 2), [-0.70710678, 0.70710678, 0.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(grpo_advantages(scores, 2, std="population"), [-1.0, 1.0, 0.0, 0.0], rtol=1e-6)

    rng = np.random.default_rng(4)
    scores = (rng.random(3 * 16) < 0.4) * 10.0  # binary verifier rewards, 3 prompts x 16 samples
    groups = scores.reshape(3, 16)
    expected = (groups - groups.mean(1, keepdims=True)) / (groups.std(1, ddof=1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(grpo_advantages(jnp.asarray(scores), 16), expected.reshape(-1), rtol=1e-6, atol=1e-6)


def test_group_normalisation_rejects_a_ragged_batch():
    with pytest.raises(ConfigError, match="whole number of groups"):
        grpo_advantages(jnp.zeros(10), 4)
    with pytest.raises(ConfigError, match="at least 2 samples"):
        grpo_advantages(jnp.zeros(4), 1)
