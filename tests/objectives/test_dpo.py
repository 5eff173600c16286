import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.errors import ConfigError
from tulu_jax.objectives import PREFERENCE_LOSS_TYPES, preference_loss, sequence_logps

from . import numpy_reference as ref


def _pairs(seed=0, pairs=6):
    rng = np.random.default_rng(seed)
    chosen_lengths = rng.integers(3, 40, size=pairs).astype(np.float64)
    rejected_lengths = rng.integers(3, 40, size=pairs).astype(np.float64)
    policy_chosen = -chosen_lengths * rng.uniform(0.2, 1.5, pairs)
    policy_rejected = -rejected_lengths * rng.uniform(0.2, 1.5, pairs)
    reference_chosen = policy_chosen + rng.normal(0, 1.0, pairs)
    reference_rejected = policy_rejected + rng.normal(0, 1.0, pairs)
    arrays = policy_chosen, policy_rejected, reference_chosen, reference_rejected, chosen_lengths, rejected_lengths
    # Float32-representable inputs, so that the comparison measures the formula and not the input rounding.
    return tuple(a.astype(np.float32).astype(np.float64) for a in arrays)


def _as_f32(arrays):
    return [jnp.asarray(a, jnp.float32) for a in arrays]


@pytest.mark.parametrize("loss_type", PREFERENCE_LOSS_TYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_each_loss_matches_the_recipe_formula(loss_type, label_smoothing):
    inputs = _pairs(seed=1)
    beta = 5.0 if loss_type in ("dpo_norm", "simpo") else 0.1
    loss, metrics = preference_loss(
        *_as_f32(inputs), loss_type=loss_type, beta=beta, label_smoothing=label_smoothing, gamma_beta_ratio=0.3
    )
    expected = ref.preference_loss(*inputs, loss_type, beta, label_smoothing, 0.3).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=1e-6)
    assert expected > 0


def test_logged_rewards_and_lengths():
    pc, pr, rc, rr, lc, lr = _pairs(seed=2)
    beta = 5.0
    _, metrics = preference_loss(*_as_f32((pc, pr, rc, rr, lc, lr)), loss_type="dpo_norm", beta=beta)
    chosen_rewards = beta * (pc - rc) / lc
    rejected_rewards = beta * (pr - rr) / lr
    np.testing.assert_allclose(metrics["rewards/chosen"], chosen_rewards.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["rewards/rejected"], rejected_rewards.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["rewards/margin"], (chosen_rewards - rejected_rewards).mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["rewards/accuracy"], (chosen_rewards > rejected_rewards).mean())
    np.testing.assert_allclose(metrics["logps/chosen"], pc.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["logps/rejected"], pr.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["lengths/chosen"], lc.mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["lengths/rejected"], lr.mean(), rtol=1e-6)
    _, dpo_metrics = preference_loss(*_as_f32((pc, pr, rc, rr, lc, lr)), loss_type="dpo", beta=beta)
    np.testing.assert_allclose(dpo_metrics["rewards/chosen"], (beta * (pc - rc)).mean(), rtol=1e-6)


def test_dpo_norm_is_dpo_on_per_token_logps():
    pc, pr, rc, rr, lc, lr = _pairs(seed=3)
    assert np.all(lc != lr)  # unequal lengths, so the normalisation matters
    normalised, _ = preference_loss(*_as_f32((pc, pr, rc, rr, lc, lr)), loss_type="dpo_norm", beta=5.0)
    on_per_token, _ = preference_loss(
        *_as_f32((pc / lc, pr / lr, rc / lc, rr / lr, np.ones(6), np.ones(6))), loss_type="dpo", beta=5.0
    )
    unnormalised, _ = preference_loss(*_as_f32((pc, pr, rc, rr, lc, lr)), loss_type="dpo", beta=5.0)
    np.testing.assert_allclose(normalised, on_per_token, rtol=1e-6)
    assert abs(float(normalised) - float(unnormalised)) > 1e-2


def test_simpo_ignores_the_reference():
    pc, pr, rc, rr, lc, lr = _pairs(seed=4)
    first, _ = preference_loss(*_as_f32((pc, pr, rc, rr, lc, lr)), loss_type="simpo", beta=2.0)
    second, _ = preference_loss(*_as_f32((pc, pr, rc + 3, rr - 7, lc, lr)), loss_type="simpo", beta=2.0)
    assert float(first) == float(second)


def test_wpo_weight_carries_no_gradient():
    pc, pr, rc, rr, lc, lr = _as_f32(_pairs(seed=5))
    # Real log-probs are <= 0, so the clamp at 1 only bites on odd inputs; give pair 0 a positive sum to reach it.
    pc = (pc / 20).at[0].set(2.0 * lc[0])

    def loss(pc, pr, loss_type):
        return preference_loss(pc, pr, rc, rr, lc, lr, loss_type=loss_type, beta=0.5)[0]

    weights = np.minimum(np.exp(np.asarray(pc / lc + pr / lr, np.float64)), 1.0)
    assert np.any(weights < 1) and np.any(weights == 1)
    wpo_grads = jax.grad(loss, argnums=(0, 1))(pc, pr, "wpo")
    dpo_grads = jax.grad(loss, argnums=(0, 1))(pc, pr, "dpo")
    for wpo_grad, dpo_grad in zip(wpo_grads, dpo_grads):
        np.testing.assert_allclose(wpo_grad, weights * np.asarray(dpo_grad), rtol=1e-5, atol=1e-8)


def test_sequence_logps_sum_response_tokens_only():
    rng = np.random.default_rng(6)
    logprobs = -rng.random((3, 10))
    mask = np.zeros((3, 10))
    mask[0, 4:9], mask[1, 2:3], mask[2, 1:10] = 1, 1, 1
    sums, counts = sequence_logps(jnp.asarray(logprobs, jnp.float32), mask)
    np.testing.assert_allclose(sums, [logprobs[0, 4:9].sum(), logprobs[1, 2], logprobs[2, 1:].sum()], rtol=1e-6)
    np.testing.assert_array_equal(counts, [5, 1, 9])


def test_unknown_loss_type_names_the_allowed_ones():
    zeros = jnp.zeros(2)
    with pytest.raises(ConfigError, match="dpo, dpo_norm, simpo, ipo, wpo"):
        preference_loss(zeros, zeros, zeros, zeros, zeros + 1, zeros + 1, loss_type="kto", beta=0.1)
