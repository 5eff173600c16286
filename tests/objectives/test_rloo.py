"""RLOO as a registry entry: the leave-one-out baseline against its NumPy formula, and what it declares."""

import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.errors import ConfigError
from tulu_jax.objectives import RLObjectiveConfig, Rollout, get_advantage_estimator
from tulu_jax.objectives.registry import advantage_estimator_entry

from . import numpy_reference as ref


def test_rloo_advantage_is_the_score_minus_the_other_samples_mean():
    rng = np.random.default_rng(4)
    prompts, group, length = 3, 4, 6
    scores = (rng.random(prompts * group) < 0.5) * 10.0 + rng.normal(0, 0.1, prompts * group)
    mask = (np.arange(length)[None, :] < rng.integers(1, length + 1, size=prompts * group)[:, None]).astype(np.float32)
    rollout = Rollout(jnp.asarray(scores, jnp.float32), jnp.asarray(mask), jnp.zeros((prompts * group, length)))
    result = get_advantage_estimator("rloo")(rollout, RLObjectiveConfig(advantage_estimator="rloo", group_size=group))
    expected = ref.rloo_advantages(np.asarray(scores, np.float32), group)[:, None] * mask
    np.testing.assert_allclose(result.advantages, expected, rtol=1e-5, atol=1e-5)
    assert result.returns is None and result.rewards is None


def test_rloo_needs_groups_and_no_value_model():
    entry = advantage_estimator_entry("rloo")
    assert entry.needs_groups and not entry.needs_value_model


def test_rloo_with_one_sample_per_prompt_is_refused():
    from tests.stages.rlvr_fixtures import toy_config

    with pytest.raises(ConfigError, match="compares the samples of one prompt"):
        toy_config("ppo", objective={"advantage_estimator": "rloo", "policy_loss": "ppo"})
    config = toy_config("grpo", objective={"advantage_estimator": "rloo"})
    assert not config.uses_value_model
