import jax
import jax.numpy as jnp
import numpy as np

from tulu_jax.objectives import grpo_loss, ppo_policy_loss, ppo_value_loss

from . import numpy_reference as ref


def _rollout(seed=0, batch=4, length=10):
    rng = np.random.default_rng(seed)
    old = -rng.exponential(size=(batch, length))
    new = old + rng.normal(0, 0.3, size=(batch, length))  # ratios spread on both sides of the clip range
    reference = old + rng.normal(0, 0.2, size=(batch, length))
    advantages = rng.normal(size=(batch, length))
    mask = (np.arange(length)[None, :] < rng.integers(1, length + 1, size=batch)[:, None]).astype(np.float64)
    arrays = new, old, reference, advantages, mask
    return tuple(a.astype(np.float32).astype(np.float64) for a in arrays)


def test_ppo_policy_loss_matches_numpy():
    new, old, _, advantages, mask = _rollout()
    loss, metrics = ppo_policy_loss(*(jnp.asarray(a, jnp.float32) for a in (new, old, advantages, mask)), clip_eps=0.2)
    expected = ref.masked_mean(ref.clipped_policy_term(new, old, advantages, 0.2), mask)
    np.testing.assert_allclose(loss, expected, rtol=1e-6, atol=1e-7)
    ratio = np.exp(new - old)
    was_clipped = -advantages * np.clip(ratio, 0.8, 1.2) > -advantages * ratio
    np.testing.assert_allclose(metrics["clip_fraction"], ref.masked_mean(was_clipped, mask), rtol=1e-6)
    np.testing.assert_allclose(metrics["approx_kl"], 0.5 * ref.masked_mean((new - old) ** 2, mask), rtol=1e-5)
    assert 0 < float(metrics["clip_fraction"]) < 1


def test_ppo_policy_loss_ignores_padding():
    new, old, _, advantages, mask = _rollout(seed=1)
    garbage_new = np.where(mask == 0, 50.0, new)
    garbage_adv = np.where(mask == 0, 1e6, advantages)
    clean, _ = ppo_policy_loss(new, old, advantages, mask)
    dirty, _ = ppo_policy_loss(garbage_new, old, garbage_adv, mask)
    np.testing.assert_allclose(dirty, clean, rtol=1e-6)


def test_ppo_value_loss_matches_numpy():
    rng = np.random.default_rng(2)
    values, old_values, returns = (rng.normal(size=(3, 8)).astype(np.float32).astype(np.float64) for _ in range(3))
    mask = (rng.random((3, 8)) < 0.7).astype(np.float64)
    loss, _ = ppo_value_loss(values, old_values, returns, mask, clip=0.2)
    clipped = np.clip(values, old_values - 0.2, old_values + 0.2)
    expected = 0.5 * ref.masked_mean(np.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)
    np.testing.assert_allclose(loss, expected, rtol=1e-6)


def test_grpo_loss_matches_numpy_and_broadcasts_per_response_advantages():
    new, old, reference, _, mask = _rollout(seed=3)
    per_response = np.array([1.2, -0.4, 0.0, -0.9], np.float32)
    per_token = np.broadcast_to(per_response[:, None], new.shape)
    loss, metrics = grpo_loss(new, old, reference, per_response, mask, clip_eps=0.2, beta=0.01)
    policy_term = ref.clipped_policy_term(new, old, per_token, 0.2)
    k3 = ref.kl(new, reference, "k3")
    np.testing.assert_allclose(loss, ref.masked_mean(policy_term + 0.01 * k3, mask), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics["kl"], ref.masked_mean(k3, mask), rtol=1e-5)
    loss_per_token, _ = grpo_loss(new, old, reference, per_token, mask, clip_eps=0.2, beta=0.01)
    np.testing.assert_allclose(loss_per_token, loss, rtol=1e-7)


def test_grpo_kl_gradient_flows_through_the_current_policy():
    new, old, reference, _, mask = _rollout(seed=4)
    zero_advantages = np.zeros(new.shape[0], np.float32)
    kl_only = lambda n: grpo_loss(n, old, reference, zero_advantages, mask, 0.2, 1.0)[0]  # noqa: E731
    grad = jax.grad(kl_only)(jnp.asarray(new, jnp.float32))
    # d/dnew of mean(exp(ref - new) - 1 + new - ref) = (1 - exp(ref - new)) / number of valid tokens
    expected = np.where(mask != 0, (1 - np.exp(reference - new)) / mask.sum(), 0.0)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
