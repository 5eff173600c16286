"""PPO and GRPO on one fixed rollout batch sampled from the real SmolLM2-135M-Instruct: loss, KL and the
gradient of every weight equal to a PyTorch rendering of the same formulas on transformers' model (``make test``:
the model's first 4 layers; ``slow``: all 30)."""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.helpers.real_conversations import gsm8k_rows
from tests.real_model import torch_rl_reference as reference
from tests.real_model.torch_reference import with_trainable_pad_row
from tulu_jax.generation import SamplingConfig, encode_prompt, generate, left_pad
from tulu_jax.hf import hf_tensors_from_params
from tulu_jax.objectives.registry import (
    RLObjectiveConfig, Rollout, aggregate_policy_loss, get_advantage_estimator, get_loss_aggregation, get_policy_loss,
)
from tulu_jax.stages.rlvr.learner import response_logprobs

PROMPTS, GROUP, NEW_TOKENS = 3, 2, 24
TOLERANCE = 1e-4
# Scores fixed so each group has a spread (the verifiers would give 24-token answers 0 everywhere).
SCORES = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0], np.float32)


OBJECTIVES = {
    "ppo": RLObjectiveConfig(advantage_estimator="gae", policy_loss="ppo"),
    "grpo": RLObjectiveConfig(advantage_estimator="grpo", policy_loss="grpo", group_size=GROUP, kl_beta=0.04),
}


def sample_rollout(ours_model, tokenizer, torch_policy):
    """Sampled responses (our sampler, temperature 1, seed 0) to GSM8K prompts, ``GROUP`` per prompt, with old and
    reference log-probs set apart from the current policy's (ratios off 1, some clipped) and fixed values for GAE.
    The current log-probs come from transformers' model (no grad): one forward instead of a JAX compilation."""
    config, params = ours_model
    prompts = [encode_prompt(tokenizer, [{"role": "user", "content": row["question"]}])
               for row in gsm8k_rows("test", PROMPTS, 200) for _ in range(GROUP)]
    prompt_ids, prompt_mask = left_pad(prompts, tokenizer.pad_id)
    sampled = generate(params, config, prompt_ids, prompt_mask, jax.random.PRNGKey(0),
                       sampling=SamplingConfig(temperature=1.0), max_new_tokens=NEW_TOKENS,
                       stop_ids=[tokenizer.eos_id], pad_id=tokenizer.pad_id)
    lengths = np.asarray(sampled.lengths)
    response_mask = (np.arange(NEW_TOKENS)[None] < lengths[:, None]).astype(np.float32)
    segment_ids = np.concatenate([prompt_mask, response_mask.astype(np.int32)], axis=1)
    positions = np.maximum(np.cumsum(segment_ids, axis=1) - 1, 0).astype(np.int32)
    batch = {"input_ids": np.concatenate([prompt_ids, np.asarray(sampled.tokens)], axis=1).astype(np.int32),
             "positions": positions, "segment_ids": segment_ids.astype(np.int32)}
    with torch.no_grad():
        current = reference.response_logprobs(
            torch_policy, *(torch.tensor(batch[key], dtype=torch.long) for key in ("input_ids", "positions", "segment_ids")),
            prompt_ids.shape[1]).numpy()
    noise = np.random.default_rng(0).normal(size=(2, *response_mask.shape)).astype(np.float32)
    return {"batch": batch, "prompt_length": prompt_ids.shape[1], "response_mask": response_mask,
            "old_logprobs": current + 0.3 * noise[0], "reference_logprobs": current + 0.2 * noise[1],
            "values": np.random.default_rng(1).normal(size=response_mask.shape).astype(np.float32) * 0.5}


def ours(config, params, rollout) -> dict:
    """Per algorithm: loss, metrics, per-token rewards (PPO) and HF-named gradients from tulu-jax's registry
    functions. Both algorithms in one compiled function: one forward, its VJP applied to each loss's gradient
    with respect to the log-probs (the chain rule autodiff applies to the composite)."""
    mask = rollout["response_mask"]
    estimated = {name: get_advantage_estimator(objective.advantage_estimator)(
        Rollout(SCORES, mask, rollout["old_logprobs"], rollout["reference_logprobs"], rollout["values"]), objective)
        for name, objective in OBJECTIVES.items()}

    def losses_and_grads(params):
        logprobs, pull_back = jax.vjp(
            lambda p: response_logprobs(p, config, rollout["batch"], rollout["prompt_length"], 1.0, NEW_TOKENS)[0],
            params)
        out = {}
        for name, objective in OBJECTIVES.items():
            policy_loss = get_policy_loss(objective.policy_loss)
            normaliser = get_loss_aggregation(objective.loss_aggregation)(mask)

            def loss_of(logprobs, objective=objective, policy_loss=policy_loss, normaliser=normaliser, name=name):
                per_token, metrics = policy_loss(logprobs, rollout["old_logprobs"], rollout["reference_logprobs"],
                                                 estimated[name].advantages, mask, objective)
                return aggregate_policy_loss(per_token, mask, normaliser), metrics

            (loss, metrics), cotangent = jax.value_and_grad(loss_of, has_aux=True)(logprobs)
            out[name] = (loss, metrics, pull_back(cotangent)[0])
        return out

    results = jax.device_get(jax.jit(losses_and_grads)(jax.tree.map(jnp.asarray, params)))
    return {name: (float(loss), metrics, estimated[name].rewards, hf_tensors_from_params(grads, config))
            for name, (loss, metrics, grads) in results.items()}


@pytest.fixture(scope="module")
def shallow_case(smollm2_shallow_ours, smollm2_shallow_torch, smollm2_tokenizer):
    """The model's first 4 layers (conftest): rollout, transformers' twin and our results for both algorithms."""
    policy = with_trainable_pad_row(smollm2_shallow_torch)  # used only here; only gradients are taken
    rollout = sample_rollout(smollm2_shallow_ours, smollm2_tokenizer, policy)
    return rollout, policy, ours(*smollm2_shallow_ours, rollout)


@pytest.fixture(scope="module")
def full_case(smollm2_ours, smollm2_torch, smollm2_tokenizer):
    """All 30 layers (transformers' model a deep copy of the session's, only gradients are taken)."""
    policy = with_trainable_pad_row(copy.deepcopy(smollm2_torch))
    rollout = sample_rollout(smollm2_ours, smollm2_tokenizer, policy)
    return rollout, policy, ours(*smollm2_ours, rollout)


def theirs(model, rollout, objective):
    """The same in PyTorch: loss, KL (k3 to the reference for GRPO, the k1 rewards for PPO), named gradients."""
    as64 = lambda name: torch.tensor(rollout[name], dtype=torch.float64)  # noqa: E731
    mask, old, ref = as64("response_mask"), as64("old_logprobs"), as64("reference_logprobs")
    scores = torch.tensor(SCORES, dtype=torch.float64)
    if objective.advantage_estimator == "gae":
        advantages, rewards = reference.ppo_advantages(scores, mask, old, ref, as64("values"), objective.kl_beta,
                                                       objective.gamma, objective.lam)
    else:
        advantages, rewards = reference.grpo_advantages(scores, objective.group_size, mask), None
    tensors = {key: torch.tensor(np.asarray(value), dtype=torch.long) for key, value in rollout["batch"].items()}
    model.zero_grad(set_to_none=True)
    new = reference.response_logprobs(model, tensors["input_ids"], tensors["positions"], tensors["segment_ids"],
                                      rollout["prompt_length"])
    mask32, advantages32 = mask.float(), advantages.float()
    per_token = reference.clipped_term(new, old.float(), advantages32, objective.clip_eps)
    kl = reference.k3(new, ref.float())
    if objective.policy_loss == "grpo":
        per_token = per_token + objective.kl_beta * kl
    loss = reference.masked_mean(per_token, mask32)
    loss.backward()
    grads = {name: parameter.grad.numpy() for name, parameter in model.named_parameters()}
    return float(loss.detach()), float(reference.masked_mean(kl, mask32).detach()), rewards, grads


def compare(algorithm, case):
    rollout, torch_policy, our_results = case
    objective = OBJECTIVES[algorithm]
    our_loss, metrics, our_rewards, our_grads = our_results[algorithm]
    their_loss, their_kl, their_rewards, their_grads = theirs(torch_policy, rollout, objective)

    # Per tensor: ‖ours − torch‖ / ‖torch‖ (sums over every position, e.g. a norm's weight, round differently
    # in float32; the largest single-element gap is reported too).
    relative, element = {}, {}
    for name, gradient in their_grads.items():
        relative[name] = float(np.linalg.norm(our_grads[name] - gradient) / max(np.linalg.norm(gradient), 1e-12))
        element[name] = float(np.abs(our_grads[name] - gradient).max() / max(np.abs(gradient).max(), 1e-12))
    worst = relative
    clipped = float(metrics["clip_fraction"])
    print(f"\n{algorithm}: loss {their_loss:.6f} (|diff| {abs(our_loss - their_loss):.1e}), clip fraction {clipped:.3f}, "
          f"worst gradient tensor |diff|/|grad| {max(worst.values()):.1e} ({max(worst, key=worst.get)}), "
          f"worst element max|diff|/max|grad| {max(element.values()):.1e} ({max(element, key=element.get)})")
    assert 0 < clipped < 1
    assert abs(our_loss - their_loss) <= TOLERANCE * max(1.0, abs(their_loss))
    if algorithm == "ppo":  # the KL sits in the rewards: -β·k1 per token, plus the score at the end
        np.testing.assert_allclose(np.asarray(our_rewards), their_rewards.numpy(), atol=TOLERANCE)
    else:
        assert abs(float(metrics["kl"]) - their_kl) <= TOLERANCE * max(1.0, their_kl)
    assert set(our_grads) >= set(their_grads)
    assert max(worst.values()) <= TOLERANCE


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_loss_kl_and_gradients_equal_a_pytorch_rendering(algorithm, shallow_case):
    compare(algorithm, shallow_case)


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_loss_kl_and_gradients_equal_a_pytorch_rendering_30_layers(algorithm, full_case):
    compare(algorithm, full_case)
