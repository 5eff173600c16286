"""The off-policy corrections (objective.off_policy_correction) against their NumPy formulas, and how the
policy losses apply them: only to the clipped policy term, without gradient through the weights, and not
at all under ``none``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.config import from_dict
from tulu_jax.errors import ConfigError
from tulu_jax.objectives import RLObjectiveConfig, get_policy_loss
from tulu_jax.objectives.registry import aggregate_policy_loss, get_off_policy_correction, off_policy_correction_names

from . import numpy_reference as ref

CORRECTIONS = ("tis", "icepop", "sequence_mask")


def _logprobs(seed=0, batch=6, length=9, spread=1.0):
    """Learner-old and sampler log-probs whose ratios spread over about [e^-2, e^2] (both sides of cap 2)."""
    rng = np.random.default_rng(seed)
    old = -rng.exponential(size=(batch, length))
    sampler = old + rng.normal(0, spread, size=(batch, length))
    sampler[0] = old[0] + 0.05  # one response close to on-policy, so sequence_mask keeps at least one
    mask = (np.arange(length)[None, :] < rng.integers(2, length + 1, size=batch)[:, None]).astype(np.float64)
    return tuple(a.astype(np.float32).astype(np.float64) for a in (old, sampler, mask))


def test_the_corrections_are_registered():
    assert {"none", *CORRECTIONS} <= set(off_policy_correction_names())
    assert RLObjectiveConfig().off_policy_correction == "none" and RLObjectiveConfig().tis_cap == 2.0


@pytest.mark.parametrize("name", CORRECTIONS)
@pytest.mark.parametrize("cap", [2.0, 1.5])
def test_weights_match_numpy(name, cap):
    old, sampler, mask = _logprobs(seed=1)
    config = RLObjectiveConfig(off_policy_correction=name, tis_cap=cap)
    weights, metrics = get_off_policy_correction(name)(old, sampler, mask, config)
    expected = ref.off_policy_weights(old, sampler, mask, name, cap)
    np.testing.assert_allclose(weights, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics["off_policy_weight"], ref.masked_mean(expected, mask), rtol=1e-5)
    ratio = np.exp(old - sampler)
    np.testing.assert_allclose(metrics["off_policy_ratio"], ref.masked_mean(ratio, mask), rtol=1e-5)
    # both branches of each formula are exercised: some weights are the plain ratio (or 1), some are not
    changed = ref.masked_mean(~np.isclose(expected, 1.0 if name == "sequence_mask" else ratio), mask)
    assert 0 < changed < 1
    np.testing.assert_allclose(metrics["off_policy_clip_fraction"], changed, rtol=1e-5)
    assert np.all(np.asarray(weights)[mask == 0] == 0)


def test_tis_is_the_plain_ratio_below_the_cap_and_the_cap_above():
    old = np.log(np.array([[0.5, 0.1, 0.9, 0.2]]))
    sampler = np.log(np.array([[0.5, 0.4, 0.3, 0.01]]))  # ratios 1, 0.25, 3, 20
    weights, _ = get_off_policy_correction("tis")(old, sampler, np.ones((1, 4)), RLObjectiveConfig())
    np.testing.assert_allclose(weights, [[1.0, 0.25, 2.0, 2.0]], rtol=1e-6)
    icepop, _ = get_off_policy_correction("icepop")(old, sampler, np.ones((1, 4)), RLObjectiveConfig())
    np.testing.assert_allclose(icepop, [[1.0, 0.0, 0.0, 0.0]], rtol=1e-6)


def test_padding_with_extreme_logprobs_gives_finite_zero_weights():
    old, sampler, mask = _logprobs(seed=2)
    sampler = np.where(mask == 0, -1e30, sampler)
    for name in CORRECTIONS:
        weights, metrics = get_off_policy_correction(name)(old, sampler, mask, RLObjectiveConfig())
        assert np.all(np.isfinite(weights)) and np.all(np.asarray(weights)[mask == 0] == 0)
        assert all(np.isfinite(float(value)) for value in metrics.values())


@pytest.mark.parametrize("loss_name", ["ppo", "grpo"])
@pytest.mark.parametrize("name", CORRECTIONS)
def test_the_loss_weights_only_the_policy_term(loss_name, name):
    old, sampler, mask = _logprobs(seed=3)
    rng = np.random.default_rng(4)
    new = (old + rng.normal(0, 0.3, size=old.shape)).astype(np.float32).astype(np.float64)
    reference = (old + rng.normal(0, 0.2, size=old.shape)).astype(np.float32).astype(np.float64)
    advantages = rng.normal(size=old.shape)
    config = RLObjectiveConfig(policy_loss=loss_name, off_policy_correction=name, kl_beta=0.05)
    weights, _ = get_off_policy_correction(name)(old, sampler, mask, config)
    per_token, _ = get_policy_loss(loss_name)(new, old, reference, advantages, mask, config, correction=weights)
    expected = ref.clipped_policy_term(new, old, advantages, 0.2) * ref.off_policy_weights(old, sampler, mask, name, 2.0)
    if loss_name == "grpo":
        expected = expected + 0.05 * ref.kl(new, reference, "k3")
    np.testing.assert_allclose(np.where(mask != 0, per_token, 0), np.where(mask != 0, expected, 0),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_name", ["ppo", "grpo"])
def test_none_leaves_the_loss_and_its_gradient_bit_for_bit(loss_name):
    old, sampler, mask = _logprobs(seed=5)
    rng = np.random.default_rng(6)
    new = jnp.asarray(old + rng.normal(0, 0.3, size=old.shape), jnp.float32)
    reference, advantages = (jnp.asarray(a, jnp.float32) for a in (old - 0.1, rng.normal(size=old.shape)))
    old, sampler, mask = (jnp.asarray(a, jnp.float32) for a in (old, sampler, mask))
    config = RLObjectiveConfig(policy_loss=loss_name)
    weights, metrics = get_off_policy_correction("none")(old, sampler, mask, config)
    assert weights is None and metrics == {}
    loss = get_policy_loss(loss_name)

    def total(new_logprobs, **kwargs):
        per_token, _ = loss(new_logprobs, old, reference, advantages, mask, config, **kwargs)
        return aggregate_policy_loss(per_token, mask, jnp.sum(mask))

    before, grad_before = jax.value_and_grad(total)(new)
    after, grad_after = jax.value_and_grad(lambda x: total(x, correction=weights))(new)
    assert np.array_equal(before, after) and np.array_equal(grad_before, grad_after)


def test_weights_carry_no_gradient_and_scale_the_policy_gradient():
    old, sampler, mask = _logprobs(seed=7)
    old, sampler, mask = (jnp.asarray(a, jnp.float32) for a in (old, sampler, mask))
    config = RLObjectiveConfig(off_policy_correction="tis")
    tis = get_off_policy_correction("tis")
    grads = jax.grad(lambda o, s: jnp.sum(tis(o, s, mask, config)[0]), argnums=(0, 1))(old, sampler)
    assert all(np.all(np.asarray(g) == 0) for g in grads)
    advantages = jnp.ones_like(old)
    weights, _ = tis(old, sampler, mask, config)

    def per_token_sum(new, correction):
        per_token, _ = get_policy_loss("ppo")(new, old, None, advantages, mask, config, correction=correction)
        return jnp.sum(jnp.where(mask != 0, per_token, 0.0))

    plain = jax.grad(per_token_sum)(old, None)  # ratio 1: inside the clip range, gradient −A per token
    weighted = jax.grad(per_token_sum)(old, weights)
    np.testing.assert_allclose(weighted, np.asarray(plain) * np.asarray(weights), rtol=1e-6)


def test_config_refuses_unknown_names_and_caps_below_one():
    with pytest.raises(ConfigError, match=r"objective.off_policy_correction: unknown name 'vtrace'; allowed: .*tis"):
        from_dict(RLObjectiveConfig, {"off_policy_correction": "vtrace"})
    for cap in (0.5, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="objective.tis_cap"):
            RLObjectiveConfig(off_policy_correction="tis", tis_cap=cap)
    config = from_dict(RLObjectiveConfig, {"off_policy_correction": "tis", "tis_cap": 3.0})
    assert config.off_policy_correction == "tis" and config.tis_cap == 3.0
