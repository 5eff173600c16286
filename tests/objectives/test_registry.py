import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.config import from_dict
from tulu_jax.errors import ConfigError
from tulu_jax.objectives import RLObjectiveConfig, Rollout, get_advantage_estimator, get_policy_loss
from tulu_jax.objectives.registry import (
    advantage_estimator_names, aggregate_policy_loss, get_loss_aggregation, loss_aggregation_names, policy_loss_names,
)

from . import numpy_reference as ref


def _rollout(seed=0, prompts=2, group=4, length=7):
    rng = np.random.default_rng(seed)
    batch = prompts * group
    mask = (np.arange(length)[None, :] < rng.integers(2, length + 1, size=batch)[:, None]).astype(np.float32)
    return Rollout(
        sequence_scores=jnp.asarray((rng.random(batch) < 0.5) * 10.0, jnp.float32),
        response_mask=jnp.asarray(mask),
        old_logprobs=jnp.asarray(-rng.exponential(size=(batch, length)), jnp.float32),
        reference_logprobs=jnp.asarray(-rng.exponential(size=(batch, length)), jnp.float32),
        values=jnp.asarray(rng.normal(size=(batch, length)), jnp.float32),
    )


def test_both_algorithms_are_registered():
    assert {"gae", "grpo"} <= set(advantage_estimator_names())
    assert {"ppo", "grpo"} <= set(policy_loss_names())


def test_unknown_names_are_config_errors_listing_the_known_ones():
    with pytest.raises(ConfigError, match="gae, grpo"):
        get_advantage_estimator("vtrace")
    with pytest.raises(ConfigError, match="grpo, ppo"):
        get_policy_loss("reinforce")
    with pytest.raises(ConfigError, match=r"objective.loss_aggregation: unknown name 'seq_mean'; allowed: .*token_mean"):
        RLObjectiveConfig(loss_aggregation="seq_mean")
    assert "token_mean" in loss_aggregation_names()


def test_gae_estimator_is_the_ppo_recipe():
    rollout = _rollout()
    config = RLObjectiveConfig(kl_beta=0.05, gamma=1.0, lam=0.95)
    result = get_advantage_estimator("gae")(rollout, config)
    as64 = lambda x: np.asarray(x, np.float64)  # noqa: E731
    mask = as64(rollout.response_mask)
    kl = ref.kl(as64(rollout.old_logprobs), as64(rollout.reference_logprobs), "k1")
    rewards = ref.per_token_rewards(kl, as64(rollout.sequence_scores), mask, 0.05)
    advantages, returns = ref.gae(rewards, as64(rollout.values), mask, 1.0, 0.95)
    np.testing.assert_allclose(result.rewards, rewards, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.returns, returns, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.advantages, ref.whiten(advantages, mask), rtol=1e-4, atol=1e-5)


def test_grpo_estimator_spreads_group_advantages_over_response_tokens():
    rollout = _rollout(seed=1)
    result = get_advantage_estimator("grpo")(rollout, RLObjectiveConfig(advantage_estimator="grpo", group_size=4))
    groups = np.asarray(rollout.sequence_scores, np.float64).reshape(2, 4)
    spread = groups.std(1, ddof=1, keepdims=True)
    per_response = ((groups - groups.mean(1, keepdims=True)) / (spread + 1e-8)).reshape(-1)
    expected = per_response[:, None] * np.asarray(rollout.response_mask)
    np.testing.assert_allclose(result.advantages, expected, rtol=1e-6, atol=1e-6)
    assert result.returns is None


def test_one_learner_call_serves_both_policy_losses():
    rollout = _rollout(seed=2)
    new_logprobs = rollout.old_logprobs + 0.1
    mask = np.asarray(rollout.response_mask)
    for name, beta in [("ppo", 0.05), ("grpo", 0.01)]:
        config = RLObjectiveConfig(policy_loss=name, kl_beta=beta)
        advantages = get_advantage_estimator("gae")(rollout, config).advantages
        per_token, metrics = get_policy_loss(name)(
            new_logprobs, rollout.old_logprobs, rollout.reference_logprobs, advantages, rollout.response_mask, config
        )
        new, old, reference = (np.asarray(a) for a in (new_logprobs, rollout.old_logprobs, rollout.reference_logprobs))
        term = ref.clipped_policy_term(new, old, np.asarray(advantages), 0.2)
        if name == "grpo":
            term = term + beta * ref.kl(new, reference, "k3")
        np.testing.assert_allclose(np.asarray(per_token) * mask, term * mask, rtol=1e-5, atol=1e-6)
        # Tülu 3's aggregation: the token-masked mean.
        loss = aggregate_policy_loss(per_token, rollout.response_mask, get_loss_aggregation("token_mean")(mask))
        np.testing.assert_allclose(loss, ref.masked_mean(term, mask), rtol=1e-5, atol=1e-6)
        assert "clip_fraction" in metrics


def test_config_section_loads_and_validates():
    config = from_dict(RLObjectiveConfig, {"advantage_estimator": "grpo", "policy_loss": "grpo", "group_size": 16})
    assert config.group_size == 16 and config.kl_estimator == "k1"
    with pytest.raises(ConfigError):
        from_dict(RLObjectiveConfig, {"advantage_estimator": "vtrace"})
