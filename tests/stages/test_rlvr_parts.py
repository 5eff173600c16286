"""The RLVR stage's parts against independent renderings: rollout rows, scores, learner log-probs, GAE,
and the Tülu 3 configs' hyperparameters (RECIPE.md section 7)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.stages.rlvr_fixtures import toy_config
from tests.stages.rlvr_toy_task import toy_model_config
from tulu_jax.config import load_config
from tulu_jax.errors import ConfigError
from tulu_jax.models import Llama, init_params
from tulu_jax.stages.rlvr import RLVRConfig
from tulu_jax.stages.rlvr.learner import build_prepare_fn
from tulu_jax.stages.rlvr.rollout import RolloutBatch, repeat_prompts, score_responses, sequence_arrays, sequence_scores

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_sequence_arrays_match_the_samplers_context():
    prompt_ids = np.array([[0, 0, 5, 6], [7, 8, 9, 10]])
    prompt_mask = np.array([[0, 0, 1, 1], [1, 1, 1, 1]])
    tokens = np.array([[11, 1, 0], [12, 13, 14]])
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    arrays = jax.device_get(sequence_arrays(prompt_ids, prompt_mask, tokens, mask))
    np.testing.assert_array_equal(arrays["input_ids"][0], [0, 0, 5, 6, 11, 1, 0])
    np.testing.assert_array_equal(arrays["segment_ids"][0], [0, 0, 1, 1, 1, 1, 0])
    # Positions count real tokens from 0, as the sampler's cumsum(mask) - 1.
    np.testing.assert_array_equal(arrays["positions"][0][2:6], [0, 1, 2, 3])
    np.testing.assert_array_equal(arrays["positions"][1], [0, 1, 2, 3, 4, 5, 6])


def test_scores_use_the_verifier_named_by_dataset_and_the_nonstop_penalty():
    verifier = score_responses(["so 7", "7 then 8", "\\boxed{7}"], ["7", "7", "7"], ["gsm8k", "gsm8k", "math"])
    np.testing.assert_array_equal(verifier, [1.0, 0.0, 1.0])
    stopped = np.array([True, True, False])
    np.testing.assert_array_equal(sequence_scores(verifier, stopped, 10.0, None), [10.0, 0.0, 10.0])
    np.testing.assert_array_equal(sequence_scores(verifier, stopped, 10.0, -10.0), [10.0, 0.0, -10.0])


def test_grpo_groups_are_consecutive_copies_of_a_prompt():
    batch = {"prompt_ids": np.array([[1, 2], [3, 4]]), "prompt_mask": np.ones((2, 2), np.int32),
             "ground_truth": ["a", "b"], "dataset": ["gsm8k", "math"]}
    repeated = repeat_prompts(batch, 3)
    np.testing.assert_array_equal(repeated["prompt_ids"][:, 0], [1, 1, 1, 3, 3, 3])
    assert repeated["ground_truth"] == ["a"] * 3 + ["b"] * 3


def _numpy_gae(rewards, values, mask, gamma, lam):
    advantages = np.zeros_like(rewards)
    for row in range(rewards.shape[0]):
        n = int(mask[row].sum())
        following = 0.0
        for t in reversed(range(n)):
            next_value = values[row, t + 1] if t + 1 < n else 0.0
            following = rewards[row, t] + gamma * next_value - values[row, t] + gamma * lam * following
            advantages[row, t] = following
    return advantages


def test_prepare_matches_full_logits_and_the_gae_formula():
    config = toy_config("ppo", rollout={"prompts_per_step": 2, "temperature": 0.7})
    model_config = toy_model_config()
    policy = init_params(model_config, jax.random.PRNGKey(0))
    reference = init_params(model_config, jax.random.PRNGKey(1))
    value = {"model": {k: v for k, v in policy.items() if k != "lm_head"},
             "score": {"kernel": jax.random.normal(jax.random.PRNGKey(2), (model_config.hidden_size,)) * 0.1}}
    prompt_length = 4
    prompt_ids = np.array([[0, 3, 4, 5], [6, 7, 8, 9]])
    prompt_mask = (prompt_ids != 0).astype(np.int32)
    tokens = np.array([[10, 1, 0], [11, 12, 13]])
    mask = np.array([[1, 1, 0], [1, 1, 1]], np.int32)
    sequences = sequence_arrays(prompt_ids, prompt_mask, tokens, mask)
    batch = RolloutBatch(**sequences, response_mask=jnp.asarray(mask, jnp.float32), sampler_logprobs=jnp.zeros((2, 3)),
                         scores=jnp.array([10.0, 0.0]))
    prepare = jax.jit(build_prepare_fn(config, model_config, prompt_length))
    prepared, metrics = prepare({"policy": policy, "value": value}, reference, batch)
    learner_batch = prepared._asdict()

    def direct_logprobs(params):
        logits = np.asarray(Llama(model_config).apply(
            {"params": params}, sequences["input_ids"], positions=sequences["positions"],
            segment_ids=sequences["segment_ids"]
        ), np.float64) / 0.7
        logits = logits[:, prompt_length - 1 : -1]
        log_softmax = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        return np.take_along_axis(log_softmax, tokens[..., None], axis=-1)[..., 0]

    old, ref = direct_logprobs(policy), direct_logprobs(reference)
    np.testing.assert_allclose(np.asarray(learner_batch["old_logprobs"]) * mask, old * mask, atol=2e-5)
    np.testing.assert_allclose(np.asarray(learner_batch["reference_logprobs"]) * mask, ref * mask, atol=2e-5)
    # RECIPE.md 7: r_t = -β·(logπ − logρ), plus the score at the last response token; GAE γ=1, λ=0.95.
    rewards = -0.05 * (old - ref) * mask
    rewards[0, 1] += 10.0
    rewards[1, 2] += 0.0
    values = np.asarray(learner_batch["old_values"])
    advantages = _numpy_gae(rewards, values, mask, 1.0, 0.95)
    returns = (advantages + values) * mask
    np.testing.assert_allclose(np.asarray(learner_batch["returns"]), returns, atol=1e-4)
    valid = advantages[mask == 1]
    whitened = (valid - valid.mean()) / np.sqrt(valid.var(ddof=1) + 1e-8)
    np.testing.assert_allclose(np.asarray(learner_batch["advantages"])[mask == 1], whitened, atol=1e-4)
    np.testing.assert_allclose(metrics["kl"], np.mean(((old - ref) * mask).sum(1)), atol=1e-5)


@pytest.mark.parametrize(
    "name, beta, lr, warmup, per_step, datasets",
    [("8b", 0.05, 3e-7, 0.0, 224, "gsm8k+math+ifeval"), ("70b", 0.07, 1e-7, 0.1, 640, "gsm8k+math+ifeval"),
     ("405b", 0.05, 1e-7, 0.0, 1856, "math")],
)
def test_tulu3_rlvr_configs_carry_the_paper_hyperparameters(name, beta, lr, warmup, per_step, datasets):
    config = load_config(RLVRConfig, CONFIGS / f"tulu3_{name}_rlvr.yaml")
    assert (config.objective.kl_beta, config.optimizer.learning_rate, config.schedule.warmup_ratio) == (beta, lr, warmup)
    assert config.rollout.responses_per_step == per_step and config.rollout.samples_per_prompt == 1
    assert (config.rollout.max_new_tokens, config.data.max_prompt_len, config.rollout.temperature) == (2048, 2048, 1.0)
    assert (config.ppo.epochs, config.ppo.minibatches, config.ppo.value_loss_coef) == (4, 1, 0.1)
    assert (config.objective.advantage_estimator, config.objective.policy_loss) == ("gae", "ppo")
    assert (config.optimizer.eps, config.optimizer.max_grad_norm, config.rollout.verifiable_reward) == (1e-5, 1.0, 10.0)
    assert (config.objective.gamma, config.objective.lam, config.objective.kl_estimator) == (1.0, 0.95, "k1")
    assert config.value.init == "reward_model"
    assert [source.name for source in config.data.sources] == [datasets]


def test_every_rlvr_config_loads():
    for path in sorted(CONFIGS.glob("*rlvr*.yaml")):
        load_config(RLVRConfig, path)


def test_config_mistakes_are_reported_with_the_key():
    with pytest.raises(ConfigError, match="group_size"):
        toy_config("grpo", objective={"group_size": 2})
    with pytest.raises(ConfigError, match=r"advantage_estimator.*'vtrace'.*allowed: .*gae, grpo"):
        toy_config("ppo", objective={"advantage_estimator": "vtrace"})
    with pytest.raises(ConfigError, match=r"policy_loss.*'reinforce'.*allowed: .*grpo, ppo"):
        toy_config("ppo", objective={"policy_loss": "reinforce"})
    with pytest.raises(ConfigError, match="value.path"):
        toy_config("ppo", value={"init": "reward_model"})
    with pytest.raises(ConfigError, match="minibatches"):
        toy_config("ppo", ppo={"minibatches": 5})


def test_grpo_with_one_sample_per_prompt_is_refused_clearly():
    with pytest.raises(ConfigError, match=r"compares the samples of one prompt.*samples_per_prompt is 1"):
        toy_config("grpo", rollout={"samples_per_prompt": 1}, objective={"group_size": 1})


def test_the_policy_is_named_like_sft_and_dpo():
    config = toy_config("ppo", model={"source": "runs/dpo"})
    assert config.model.source == "runs/dpo"
    with pytest.raises(ConfigError, match="policy"):
        from tulu_jax.config import from_dict

        from_dict(RLVRConfig, {"policy": {"path": "runs/dpo"}})


def test_value_model_from_a_reward_model_is_restored_into_its_shards(tmp_path):
    from tulu_jax.models.value_head import init_scalar_head_params, scalar_head_logical_axes
    from tulu_jax.sharding import MeshConfig, make_mesh, tree_shardings
    from tulu_jax.stages.reward_model import save_reward_model
    from tulu_jax.stages.rlvr.learner import value_params_for

    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices (tests/conftest.py forces 8 CPU devices)")
    model_config = toy_model_config()
    saved = init_scalar_head_params(model_config, jax.random.PRNGKey(3))
    save_reward_model(tmp_path / "rm" / "reward_model", saved, model_config)
    config = toy_config("ppo", value={"init": "reward_model", "path": str(tmp_path / "rm")})
    mesh = make_mesh(MeshConfig(data=1, fsdp=4, tensor=2))
    shapes = jax.eval_shape(lambda: saved)
    shardings = tree_shardings(mesh, scalar_head_logical_axes(model_config), shapes)
    restored = value_params_for(config, model_config, None, shardings)
    for want, got, where in zip(jax.tree.leaves(saved), jax.tree.leaves(restored), jax.tree.leaves(shardings)):
        assert got.sharding == where
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    with pytest.raises(ConfigError, match="hidden_size"):
        value_params_for(config, toy_model_config(hidden_size=64), None, shardings)


def test_a_row_no_verifier_can_score_stops_the_step_naming_the_row():
    from tests.stages.rlvr_fixtures import toy_stage
    from tests.stages.rlvr_toy_task import toy_prompts
    from tulu_jax.errors import DataError
    from tulu_jax.stages.rlvr.stage import make_loader

    config = toy_config("ppo", rollout={"prompts_per_step": 4})
    stage = toy_stage(config)
    prompts = [dict(prompt, dataset="ifeval", ground_truth="not json") for prompt in toy_prompts(4)]
    batch = next(make_loader(config, prompts, 0))
    with pytest.raises(DataError, match=r"rollout row \d+ \(dataset 'ifeval'\)"):
        stage.step(stage.initial_state(), batch)
