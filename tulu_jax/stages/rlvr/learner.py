"""The RL learner: response log-probs and values of finished rollouts, advantages, and the PPO epochs.

A rollout row is ``input_ids = prompt (left-padded, P columns) + response (R columns)``. The logits at
column ``P − 1 + j`` predict response token ``j``, so log-probs, entropies and values of the response are
read from columns ``P − 1 .. P + R − 2``. Values follow the same alignment: ``V_j`` is the value of the
state just before response token ``j`` is drawn.

Train-state layout: ``TrainState.params = {"policy": ..., "value": ...}`` (``"value"`` only for estimators
that need a value model) and ``TrainState.opt_state = {"policy": ..., "value": ...}``: :class:`PerModelOptimizer`
gives each model its own AdamW and its own gradient-norm clip, as two separate optimizers would; both are
sharded by the logical-axis rules. ``TrainState.step`` counts rollout steps (the optimizers count their
updates themselves). The frozen reference model is not in the state: it is the starting policy, reloaded
(sharded) on resume.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax

from tulu_jax.models import Llama, LlamaConfig, unembedding_matrix
from tulu_jax.models.value_head import LlamaScalarHead
from tulu_jax.objectives.logprobs import chunked_token_logprobs
from tulu_jax.objectives.masked import masked_mean
from tulu_jax.objectives.ppo import ppo_value_loss
from tulu_jax.objectives.registry import (
    RLObjectiveConfig, Rollout, aggregate_policy_loss, get_advantage_estimator, get_loss_aggregation,
    get_off_policy_correction, get_policy_loss,
)
from tulu_jax.stages.rlvr.config import RLVRConfig
from tulu_jax.stages.rlvr.rollout import SEQUENCE_FIELDS, RolloutBatch
from tulu_jax.stages.rlvr.value_init import value_init_entry
from tulu_jax.training.optimizer import make_optimizer, make_schedule
from tulu_jax.training.step import build_train_step
from tulu_jax.training.state import TrainState, state_shardings

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
    """``(params, reference_params, batch) -> (batch with old/reference log-probs, values, advantages, metrics)``.

    Old log-probs are recomputed by the learner's forward (ratio exactly 1 on the first update); their gap
    to the sampler's log-probs is reported as ``logprob_mismatch``.
    """
    temperature, chunk, objective = config.rollout.temperature, config.ppo.logprob_chunk, config.objective
    estimator = get_advantage_estimator(objective.advantage_estimator)

    def prepare(params, reference_params, batch: RolloutBatch):
        sequences = {key: getattr(batch, key) for key in SEQUENCE_FIELDS}
        mask = batch.response_mask
        old_logprobs, entropy = response_logprobs(params["policy"], model_config, sequences, prompt_length,
                                                  temperature, chunk)
        reference_logprobs, _ = response_logprobs(reference_params, model_config, sequences, prompt_length,
                                                  temperature, chunk)
        values = response_values(params["value"], model_config, sequences, prompt_length) if "value" in params else None
        advantages = estimator(Rollout(batch.scores, mask, old_logprobs, reference_logprobs, values), objective)
        delta = jnp.where(mask != 0, old_logprobs - reference_logprobs, 0.0)
        metrics = {
            "kl": jnp.mean(jnp.sum(delta, axis=1)),  # k1 per response, summed over its tokens
            "kl_k3_per_token": masked_mean(jnp.exp(-delta) - 1.0 + delta, mask),
            "entropy": masked_mean(entropy, mask),
            "logprob_mismatch": masked_mean(jnp.abs(old_logprobs - batch.sampler_logprobs), mask),
            "advantage_mean": masked_mean(advantages.advantages, mask),
        }
        if advantages.rewards is not None:
            metrics["total_reward"] = jnp.mean(jnp.sum(advantages.rewards, axis=1))
        if values is not None:
            metrics["value_mean"] = masked_mean(values, mask)
        prepared = batch._replace(old_logprobs=old_logprobs, reference_logprobs=reference_logprobs,
                                  advantages=advantages.advantages, old_values=values, returns=advantages.returns)
        return prepared, metrics

    return prepare


def build_loss_fn(config: RLVRConfig, model_config: LlamaConfig, prompt_length: int) -> tuple[Callable, Callable]:
    """``(loss_fn, batch_context_fn)`` for ``training.step.build_train_step``, over the prepared
    :class:`RolloutBatch`'s fields as a dict (the generic step splits dicts into micro-batches).

    The policy loss is the minibatch's per-token losses aggregated by ``objective.loss_aggregation`` (its
    normaliser is taken from the whole minibatch); the value loss and the metrics are token-masked means,
    each micro-batch contributing its share (its tokens over the minibatch's). So micro-batch losses and
    metrics add up to the minibatch's.
    """
    objective: RLObjectiveConfig = config.objective
    policy_loss = get_policy_loss(objective.policy_loss)
    normaliser = get_loss_aggregation(objective.loss_aggregation)
    off_policy_correction = get_off_policy_correction(objective.off_policy_correction)
    temperature, chunk, value_coef = config.rollout.temperature, config.ppo.logprob_chunk, config.ppo.value_loss_coef

    def context_fn(batch):
        mask = batch["response_mask"]
        return {"tokens": jnp.maximum(jnp.sum(mask), 1.0), "normaliser": normaliser(mask)}

    def loss_fn(params, micro_batch, context):
        mask = micro_batch["response_mask"]
        share = jnp.sum(mask) / context["tokens"]
        logprobs, entropy = response_logprobs(params["policy"], model_config, micro_batch, prompt_length, temperature, chunk)
        # Weights of the policy term for the sampler's lag behind the learner (None: no correction).
        weights, correction_metrics = off_policy_correction(
            micro_batch["old_logprobs"], micro_batch["sampler_logprobs"], mask, objective
        )
        per_token, metrics = policy_loss(
            logprobs, micro_batch["old_logprobs"], micro_batch["reference_logprobs"], micro_batch["advantages"],
            mask, objective, correction=weights,
        )
        loss = aggregate_policy_loss(per_token, mask, context["normaliser"])
        metrics = dict(metrics, **correction_metrics, entropy=masked_mean(jax.lax.stop_gradient(entropy), mask))
        if "value" in params:
            values = response_values(params["value"], model_config, micro_batch, prompt_length)
            value_loss, value_metrics = ppo_value_loss(
                values, micro_batch["old_values"], micro_batch["returns"], mask, objective.value_clip
            )
            loss = loss + value_coef * value_loss * share
            metrics.update(value_metrics)
        metrics = {key: value * share for key, value in metrics.items()}
        return loss, metrics

    return loss_fn, context_fn


def build_update_fn(config: RLVRConfig, model_config: LlamaConfig, prompt_length: int, optimizer, schedule, mesh=None):
    """``(state, prepared batch) -> (state, metrics)``: ``ppo.epochs`` passes, each over a fresh shuffle split
    into ``ppo.minibatches`` optimizer updates; ``state.step`` advances by one rollout step. Metrics are means
    over all the updates."""
    loss_fn, context_fn = build_loss_fn(config, model_config, prompt_length)
    train_step = build_train_step(loss_fn, optimizer, schedule, config.ppo.micro_batches, context_fn, mesh)
    epochs, minibatches = config.ppo.epochs, config.ppo.minibatches

    def update(state: TrainState, rollout: RolloutBatch):
        batch = {key: value for key, value in rollout._asdict().items() if value is not None}
        rows = rollout.response_mask.shape[0]
        rollout_step = state.step
        # Inside the scan ``step`` counts optimizer updates, so the reported learning rate is the schedule's.
        state = dataclasses.replace(state, step=rollout_step * (epochs * minibatches))

        def one_epoch(state, epoch):
            # The shuffle key comes from the state's rng, so a resumed run shuffles identically.
            order = jax.random.permutation(jax.random.fold_in(jax.random.wrap_key_data(state.rng), 7919), rows)
            split = {key: value[order].reshape(minibatches, rows // minibatches, *value.shape[1:])
                     for key, value in batch.items()}
            return jax.lax.scan(train_step, state, split)

        state, metrics = jax.lax.scan(one_epoch, state, jnp.arange(epochs))
        return dataclasses.replace(state, step=rollout_step + 1), jax.tree.map(jnp.mean, metrics)

    return update


def value_params_for(config: RLVRConfig, model_config: LlamaConfig, policy_params: Any, shardings: Any) -> dict:
    """The value model's starting params per ``value.init`` (a name in ``value_init.VALUE_INITS``), laid out by
    ``shardings`` (never gathered)."""
    return value_init_entry(config.value.init).function(config, model_config, policy_params, shardings)
