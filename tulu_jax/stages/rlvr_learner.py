"""The RL learner: response log-probs and values of finished rollouts, advantages, and the PPO epochs.

A rollout row is ``input_ids = prompt (left-padded, P columns) + response (R columns)``. The logits at
column ``P − 1 + j`` predict response token ``j``, so log-probs, entropies and values of the response are
read from columns ``P − 1 .. P + R − 2``. Values follow the same alignment: ``V_j`` is the value of the
state just before response token ``j`` is drawn.

Train-state layout: ``TrainState.params = {"policy": ..., "value": ...}`` (``"value"`` only for PPO) and
``TrainState.opt_state = {"policy": ..., "value": ...}``: :class:`PerModelOptimizer` gives each model its
own AdamW and its own gradient-norm clip, as two separate optimizers would. The frozen reference model is not in the state: it is the starting policy,
reloaded on resume.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from tulu_jax.models import Llama, LlamaConfig, unembedding_matrix
from tulu_jax.models.value_head import LlamaScalarHead
from tulu_jax.objectives.logprobs import chunked_token_logprobs
from tulu_jax.objectives.masked import masked_mean
from tulu_jax.objectives.ppo import ppo_value_loss
from tulu_jax.objectives.registry import RLObjectiveConfig, Rollout, get_advantage_estimator, get_policy_loss
from tulu_jax.stages.rlvr_config import RLVRConfig
from tulu_jax.training.optimizer import make_optimizer, make_schedule
from tulu_jax.training.step import build_train_step
from tulu_jax.training.state import TrainState, state_shardings

SEQUENCE_KEYS = ("input_ids", "positions", "segment_ids")


def sequence_arrays(prompt_ids, prompt_mask, response_tokens, response_mask) -> dict:
    """``input_ids``, ``positions``, ``segment_ids`` ``[batch, P + R]`` of prompt + response rows.

    Real tokens get segment 1, padding (left of the prompt, after the response) segment 0; positions count
    real tokens only, as the sampler's do, so the learner sees exactly the sampler's context.
    """
    input_ids = jnp.concatenate([prompt_ids, response_tokens], axis=1).astype(jnp.int32)
    segment_ids = jnp.concatenate([prompt_mask, response_mask], axis=1).astype(jnp.int32)
    positions = jnp.maximum(jnp.cumsum(segment_ids, axis=1) - 1, 0)
    return {"input_ids": input_ids, "positions": positions, "segment_ids": segment_ids}


def response_logprobs(params, config: LlamaConfig, batch: Mapping, prompt_length: int, temperature: float, chunk: int):
    """``(logprobs, entropy)`` ``[batch, R]`` of the response tokens under ``softmax(logits / temperature)``."""
    hidden = Llama(config).apply(
        {"params": params}, batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"],
        return_hidden=True,
    )  # [batch, P + R, embed]
    predicting = hidden[:, prompt_length - 1 : -1]
    targets = batch["input_ids"][:, prompt_length:]
    return chunked_token_logprobs(
        predicting, unembedding_matrix(params, config), targets, chunk_size=chunk, temperature=temperature,
        return_entropy=True,
    )


def response_values(value_params, config: LlamaConfig, batch: Mapping, prompt_length: int) -> jnp.ndarray:
    """Value-model estimates ``[batch, R]``, aligned with the response tokens."""
    values = LlamaScalarHead(config).apply(
        {"params": value_params}, batch["input_ids"], positions=batch["positions"], segment_ids=batch["segment_ids"]
    )
    return values[:, prompt_length - 1 : -1]


class PerModelOptimizer(NamedTuple):
    """An optax transformation over ``{"policy": ..., "value": ...}`` applying one inner optimizer per model.

    Its state is ``{name: inner state}``, so each model's moments can be sharded like that model's params
    (``optax.multi_transform`` hides them behind masked nodes that ``optax.tree_map_params`` cannot follow).
    """

    transforms: dict

    def init(self, params):
        return {name: self.transforms[name].init(params[name]) for name in self.transforms}

    def update(self, updates, state, params=None):
        new_updates, new_state = {}, {}
        for name, transform in self.transforms.items():
            new_updates[name], new_state[name] = transform.update(
                updates[name], state[name], None if params is None else params[name]
            )
        return new_updates, new_state


def make_rl_optimizer(config: RLVRConfig, total_updates: int) -> tuple[PerModelOptimizer, optax.Schedule]:
    """Each model its own AdamW and gradient clip, as two separate optimizers (same schedule shape)."""
    schedule = make_schedule(config.optimizer.learning_rate, config.schedule, total_updates)
    transforms = {"policy": make_optimizer(config.optimizer, schedule)}
    if config.uses_value_model:
        value_config = config.value_optimizer or config.optimizer
        value_schedule = make_schedule(value_config.learning_rate, config.schedule, total_updates)
        transforms["value"] = make_optimizer(value_config, value_schedule)
    return PerModelOptimizer(transforms), schedule


def rl_state_shardings(mesh, optimizer: PerModelOptimizer, param_shapes: dict, param_axes: dict) -> TrainState:
    """``TrainState`` shardings: each model's params and optimizer moments by its logical axes."""
    per_model = {name: state_shardings(mesh, transform, param_shapes[name], param_axes[name])
                 for name, transform in optimizer.transforms.items()}
    first = next(iter(per_model.values()))
    return TrainState(
        step=first.step, params={name: s.params for name, s in per_model.items()},
        opt_state={name: s.opt_state for name, s in per_model.items()}, rng=first.rng,
    )


def build_prepare_fn(config: RLVRConfig, model_config: LlamaConfig, prompt_length: int) -> Callable:
    """``(params, reference_params, batch) -> batch + old/reference log-probs, values, advantages, metrics``.

    ``batch`` holds the sequence arrays, ``response_mask`` ``[N, R]``, ``scores`` ``[N]`` and the sampler's
    ``sampler_logprobs``. Old log-probs are recomputed by the learner's forward (ratio exactly 1 on the first
    update); their gap to the sampler's log-probs is reported as ``logprob_mismatch``.
    """
    temperature, chunk, objective = config.rollout.temperature, config.ppo.logprob_chunk, config.objective
    estimator = get_advantage_estimator(objective.advantage_estimator)

    def prepare(params, reference_params, batch):
        mask = batch["response_mask"]
        old_logprobs, entropy = response_logprobs(params["policy"], model_config, batch, prompt_length, temperature, chunk)
        reference_logprobs, _ = response_logprobs(reference_params, model_config, batch, prompt_length, temperature, chunk)
        values = response_values(params["value"], model_config, batch, prompt_length) if "value" in params else None
        rollout = Rollout(batch["scores"], mask, old_logprobs, reference_logprobs, values)
        advantages = estimator(rollout, objective)
        delta = jnp.where(mask != 0, old_logprobs - reference_logprobs, 0.0)
        metrics = {
            "kl": jnp.mean(jnp.sum(delta, axis=1)),  # k1 per response, summed over its tokens
            "kl_k3_per_token": masked_mean(jnp.exp(-delta) - 1.0 + delta, mask),
            "entropy": masked_mean(entropy, mask),
            "logprob_mismatch": masked_mean(jnp.abs(old_logprobs - batch["sampler_logprobs"]), mask),
            "advantage_mean": masked_mean(advantages.advantages, mask),
        }
        if advantages.rewards is not None:
            metrics["total_reward"] = jnp.mean(jnp.sum(advantages.rewards, axis=1))
        if values is not None:
            metrics["value_mean"] = masked_mean(values, mask)
        learner_batch = {
            **{key: batch[key] for key in SEQUENCE_KEYS},
            "response_mask": mask.astype(jnp.float32),
            "old_logprobs": old_logprobs,
            "reference_logprobs": reference_logprobs,
            "advantages": advantages.advantages,
        }
        if values is not None:
            learner_batch["old_values"] = values
            learner_batch["returns"] = advantages.returns
        return learner_batch, metrics

    return prepare


def build_loss_fn(config: RLVRConfig, model_config: LlamaConfig, prompt_length: int) -> tuple[Callable, Callable]:
    """``(loss_fn, batch_context_fn)`` for ``training.step.build_train_step``.

    Losses are token-masked means over the whole minibatch; each micro-batch contributes its share (its
    tokens over the minibatch's), so micro-batch losses and metrics add up to the minibatch's.
    """
    objective: RLObjectiveConfig = config.objective
    policy_loss = get_policy_loss(objective.policy_loss)
    temperature, chunk, value_coef = config.rollout.temperature, config.ppo.logprob_chunk, config.ppo.value_loss_coef

    def context_fn(batch):
        return {"tokens": jnp.maximum(jnp.sum(batch["response_mask"]), 1.0)}

    def loss_fn(params, micro_batch, context):
        mask = micro_batch["response_mask"]
        share = jnp.sum(mask) / context["tokens"]
        logprobs, entropy = response_logprobs(params["policy"], model_config, micro_batch, prompt_length, temperature, chunk)
        loss, metrics = policy_loss(
            logprobs, micro_batch["old_logprobs"], micro_batch["reference_logprobs"], micro_batch["advantages"],
            mask, objective,
        )
        metrics = dict(metrics, entropy=masked_mean(jax.lax.stop_gradient(entropy), mask))
        if "value" in params:
            values = response_values(params["value"], model_config, micro_batch, prompt_length)
            value_loss, value_metrics = ppo_value_loss(
                values, micro_batch["old_values"], micro_batch["returns"], mask, objective.value_clip
            )
            loss = loss + value_coef * value_loss
            metrics.update(value_metrics)
        metrics = {key: value * share for key, value in metrics.items()}
        return loss * share, metrics

    return loss_fn, context_fn


def build_update_fn(config: RLVRConfig, model_config: LlamaConfig, prompt_length: int, optimizer, schedule, mesh=None):
    """``(state, learner_batch) -> (state, metrics)``: ``ppo.epochs`` passes, each over a fresh shuffle split
    into ``ppo.minibatches`` optimizer updates. Metrics are means over all the updates."""
    loss_fn, context_fn = build_loss_fn(config, model_config, prompt_length)
    train_step = build_train_step(loss_fn, optimizer, schedule, config.ppo.micro_batches, context_fn, mesh)
    epochs, minibatches = config.ppo.epochs, config.ppo.minibatches

    def update(state: TrainState, batch: Mapping[str, jnp.ndarray]):
        rows = batch["response_mask"].shape[0]

        def one_epoch(state, epoch):
            # The shuffle key comes from the state's rng, so a resumed run shuffles identically.
            order = jax.random.permutation(jax.random.fold_in(jax.random.wrap_key_data(state.rng), 7919), rows)
            split = {
                key: value[order].reshape(minibatches, rows // minibatches, *value.shape[1:])
                for key, value in batch.items()
            }
            return jax.lax.scan(train_step, state, split)

        state, metrics = jax.lax.scan(one_epoch, state, jnp.arange(epochs))
        return state, jax.tree.map(jnp.mean, metrics)

    return update


def value_params_for(config: RLVRConfig, model_config: LlamaConfig, policy_params: Any, seed: int) -> Optional[dict]:
    """Initial value-model params per ``value.init`` (None when the objective needs no value model)."""
    from tulu_jax.errors import ConfigError
    from tulu_jax.models.value_head import init_scalar_head_params, scalar_head_params_from_lm

    if not config.uses_value_model:
        return None
    if config.value.init == "policy":
        return jax.tree.map(jnp.asarray, scalar_head_params_from_lm(policy_params))
    if config.value.init == "scratch":
        return init_scalar_head_params(model_config, jax.random.PRNGKey(seed + 1))
    from tulu_jax.stages.reward_model import load_reward_model

    reward_config, reward_params = load_reward_model(config.value.path)
    trunk_fields = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads")
    mismatched = [name for name in trunk_fields if getattr(reward_config, name) != getattr(model_config, name)]
    if mismatched:
        raise ConfigError(
            f"value.path {config.value.path}: the reward model's {', '.join(mismatched)} differ from the policy's; "
            "the value model must have the policy's shape (train the reward model from the same base)"
        )
    return reward_params
