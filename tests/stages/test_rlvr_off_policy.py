"""objective.off_policy_correction in the RLVR learner: the loss function weights each token's policy term by
the correction computed from the prepared batch's old log-probs and the sampler's log-probs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.stages.rlvr_fixtures import toy_config
from tests.stages.rlvr_toy_task import toy_model_config
from tulu_jax.models import init_params
from tulu_jax.stages.rlvr.learner import build_loss_fn, build_prepare_fn
from tulu_jax.stages.rlvr.rollout import RolloutBatch, sequence_arrays

PROMPT_LENGTH = 4


@pytest.fixture(scope="module")
def prepared():
    """A GRPO rollout of 4 rows (one group) on the toy model, prepared by the learner, and its params."""
    config = toy_config("grpo")
    model_config = toy_model_config()
    policy = init_params(model_config, jax.random.PRNGKey(0))
    prompt_ids = np.tile(np.array([[0, 3, 4, 5]]), (4, 1))
    tokens = np.array([[10, 1, 0], [11, 12, 13], [10, 12, 1], [9, 1, 0]])
    mask = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1], [1, 1, 0]], np.int32)
    sequences = sequence_arrays(prompt_ids, (prompt_ids != 0).astype(np.int32), tokens, mask)
    batch = RolloutBatch(**sequences, response_mask=jnp.asarray(mask, jnp.float32),
                         sampler_logprobs=jnp.zeros((4, 3)), scores=jnp.array([10.0, 0.0, 10.0, 0.0]))
    prepare = jax.jit(build_prepare_fn(config, model_config, PROMPT_LENGTH))
    batch, _ = prepare({"policy": policy}, policy, batch)
    return model_config, {"policy": policy}, batch


def _loss(correction, model_config, params, batch, sampler_logprobs):
    config = toy_config("grpo", objective={"off_policy_correction": correction})
    loss_fn, context_fn = build_loss_fn(config, model_config, PROMPT_LENGTH)
    fields = {k: v for k, v in batch._replace(sampler_logprobs=sampler_logprobs)._asdict().items() if v is not None}
    return jax.jit(loss_fn)(params, fields, context_fn(fields))


def test_tis_weights_the_first_updates_policy_term(prepared):
    model_config, params, batch = prepared
    old, mask, advantages = (np.asarray(x, np.float64) for x in (batch.old_logprobs, batch.response_mask,
                                                                  batch.advantages))
    # the sampler gave some tokens 4x the learner's probability (ratio 1/4) and others 1/8 (ratio 8, capped at 2)
    shift = np.array([[np.log(4), 0, 0], [0, -np.log(8), 0], [0, 0, np.log(4)], [-np.log(8), 0, 0]])
    sampler = jnp.asarray(old + shift, jnp.float32)
    none_loss, none_metrics = _loss("none", model_config, params, batch, sampler)
    tis_loss, tis_metrics = _loss("tis", model_config, params, batch, sampler)
    weights = np.minimum(np.exp(-shift), 2.0)
    # first update: new == old, ratio 1, the clipped term is −A per token; GRPO's β·k3 is 0 (the policy is the
    # reference here)
    count = mask.sum()
    np.testing.assert_allclose(none_metrics["kl"], 0.0, atol=1e-6)
    np.testing.assert_allclose(none_loss, -(advantages * mask).sum() / count, atol=1e-5)
    np.testing.assert_allclose(tis_loss, -(advantages * weights * mask).sum() / count, atol=1e-5)
    np.testing.assert_allclose(tis_metrics["off_policy_weight"], (weights * mask).sum() / count, rtol=1e-5)
    assert "off_policy_weight" not in none_metrics


def test_tis_with_the_samplers_logprobs_equal_to_the_learners_is_none(prepared):
    model_config, params, batch = prepared
    none_loss, _ = _loss("none", model_config, params, batch, batch.old_logprobs)
    tis_loss, tis_metrics = _loss("tis", model_config, params, batch, batch.old_logprobs)
    np.testing.assert_allclose(tis_loss, none_loss, rtol=1e-6)
    np.testing.assert_allclose(tis_metrics["off_policy_weight"], 1.0, rtol=1e-6)


def test_async_steps_is_validated():
    from tulu_jax.errors import ConfigError

    assert toy_config("grpo").rollout.async_steps == 0
    with pytest.raises(ConfigError, match=r"rollout.async_steps must be >= 0 \(0 = synchronous\)"):
        toy_config("grpo", rollout={"async_steps": -1})
    with pytest.raises(ConfigError, match="async_steps >= 1 needs rollout.sampler: continuous"):
        toy_config("grpo", rollout={"async_steps": 1, "sampler": "static"})
