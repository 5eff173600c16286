"""Stage 3 of Tülu 3: RLVR, reinforcement learning with verifiable rewards (PPO by default, RECIPE.md section 7).

Read top to bottom: the learner's programs → the step (policy, frozen reference and value model, all sharded)
→ the stage on the runner (prompts, the step, the initial state, dev-prompt evaluation and keep-best, export).

One step takes a batch of prompts in two parts (``training.loop.TrainStep``). The host part (``RLVR.host``):
  1. samples responses with the current policy on the global mesh (``rollout.Sampler``),
  2. decodes and scores, on each process, only the rows that process's devices hold; all agree every row scored.
The device part (``RLVR.device``, pure ``state, rollout -> state, metrics``):
  3. computes the policy's, the reference's and (when the estimator needs one) the value model's per-token
     outputs and the advantages (``learner.build_prepare_fn``),
  4. runs ``ppo.epochs`` passes of ``ppo.minibatches`` clipped-loss updates (``learner.build_update_fn``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from data_pipeline.loader import BatchLoader
from data_pipeline.pipeline import prepare_data, rlvr_batch_fn
from data_pipeline.work_share import WorkShare
from tulu_jax import rewards, sharding
from tulu_jax.generation import SamplingConfig
from tulu_jax.generation.continuous import DecodeSlots
from tulu_jax.generation.evaluate import summarize
from tulu_jax.generation.text import stop_ids_for
from tulu_jax.models import LlamaConfig, param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.models.value_head import init_scalar_head_params, scalar_head_logical_axes
from tulu_jax.stages.model_source import check_vocab, load_model_params, resolve_model_config
from tulu_jax.stages.rlvr.async_rollouts import AsyncRollouts, queued_state, sub_meshes
from tulu_jax.stages.rlvr.config import RLVRConfig
from tulu_jax.stages.rlvr.learner import (
    build_prepare_fn, build_update_fn, make_rl_optimizer, rl_state_shardings, value_params_for,
)
from tulu_jax.stages.rlvr.rollout import RolloutBatch, Sampler
from tulu_jax.stages.runner import Stage, StagePlan, StageResult, run_stage
from tulu_jax.stages.runner.export import chat_model_export
from tulu_jax.training.hooks import Evaluation
from tulu_jax.training.state import TrainState, abstract_state, create_train_state
from tulu_jax.training.step import MeshFunction

log = logging.getLogger(__name__)

ROLLOUT_KEY_SALT = 0x5EED


@dataclass(frozen=True)
class RLVRLearner:
    """The learner's programs for one mesh; ``abstract_state()`` lowers them without weights (the planner's case)."""

    prepare: MeshFunction  # (params, reference_params, RolloutBatch) -> (prepared RolloutBatch, metrics)
    update: MeshFunction  # (state, prepared RolloutBatch) -> (state, metrics), the state donated
    optimizer: Any
    shardings: TrainState
    param_shapes: dict
    mesh: Mesh

    def abstract_state(self) -> TrainState:
        return abstract_state(self.optimizer, self.param_shapes, self.shardings)


def build_rlvr_learner(config: RLVRConfig, mesh: Mesh, model_config: LlamaConfig) -> RLVRLearner:
    """Optimizers, state shardings (policy and value by the logical-axis rules) and the jitted learner."""
    prompt_length = config.data.max_prompt_len
    shapes, axes = {"policy": param_shapes(model_config)}, {"policy": param_logical_axes(model_config)}
    if config.uses_value_model:
        shapes["value"] = jax.eval_shape(lambda: init_scalar_head_params(model_config, jax.random.PRNGKey(0)))
        axes["value"] = scalar_head_logical_axes(model_config)
    optimizer, schedule = make_rl_optimizer(config, config.total_steps * config.updates_per_step)
    shardings = rl_state_shardings(mesh, optimizer, shapes, axes)

    def batch_shardings(prepared: bool) -> RolloutBatch:
        rows, per_token = sharding.batch_sharding(mesh, 1), sharding.batch_sharding(mesh, 2)
        fields = {name: per_token for name in RolloutBatch._fields}
        fields["scores"] = rows
        if not prepared:
            fields.update(old_logprobs=None, reference_logprobs=None, advantages=None, old_values=None, returns=None)
        elif not config.uses_value_model:
            fields.update(old_values=None, returns=None)
        return RolloutBatch(**fields)

    prepare = jax.jit(
        build_prepare_fn(config, model_config, prompt_length),
        in_shardings=(shardings.params, shardings.params["policy"], batch_shardings(False)),
        out_shardings=(batch_shardings(True), sharding.replicated(mesh)),
    )
    update = jax.jit(
        build_update_fn(config, model_config, prompt_length, optimizer, schedule, mesh),
        in_shardings=(shardings, batch_shardings(True)),
        out_shardings=(shardings, sharding.replicated(mesh)),
        donate_argnums=(0,),
    )
    return RLVRLearner(MeshFunction(prepare, mesh), MeshFunction(update, mesh), optimizer, shardings, shapes, mesh)


class RLVR:
    """The stage's programs and frozen inputs (reference params, tokenizer); holds no train state."""

    def __init__(self, config: RLVRConfig, model_config: LlamaConfig, tokenizer, mesh: Mesh,
                 sampler_mesh: Optional[Mesh] = None):
        """``mesh``: the learner's; ``sampler_mesh``: where rollouts are decoded (None: the learner's mesh, the
        synchronous recipe; asynchronous RLVR gives the sampler its own sub-mesh)."""
        self.config, self.model_config, self.tokenizer, self.mesh = config, model_config, tokenizer, mesh
        rollout, evaluation = config.rollout, config.evaluation
        sharding.check_batch_divisible(rollout.responses_per_step, mesh, "rollout responses per step")
        sharding.check_batch_divisible(
            rollout.responses_per_step // (config.ppo.minibatches * config.ppo.micro_batches), mesh,
            "rows per PPO micro-batch",
        )
        self.eval_batch_size = evaluation.batch_size or rollout.responses_per_step
        sharding.check_batch_divisible(self.eval_batch_size, mesh, "evaluation.batch_size")
        self.learner = build_rlvr_learner(config, mesh, model_config)

        def sampler_on(sampler_mesh: Mesh) -> Sampler:
            return Sampler(model_config, tokenizer, sampler_mesh, stop_ids_for(tokenizer, model_config),
                           rollout.verifiable_reward, rollout.nonstop_penalty, rollout.sampling_group,
                           DecodeSlots(rollout.decode_slots, rollout.page_size), rollout.sampler == "static")

        self.sampler = sampler_on(sampler_mesh or mesh)
        self.eval_sampler = self.sampler if sampler_mesh is None else sampler_on(mesh)  # between steps, on the learner
        self.sampling = SamplingConfig(rollout.temperature, rollout.top_k, rollout.top_p)
        base_key = jax.random.PRNGKey(config.seed + ROLLOUT_KEY_SALT)
        self._rollout_key = jax.jit(lambda step: jax.random.fold_in(base_key, step),
                                    out_shardings=sharding.replicated(self.sampler.mesh))
        self._eval_key = jax.jit(lambda: jax.random.PRNGKey(0), out_shardings=sharding.replicated(mesh))
        # The frozen reference: the starting policy, read sharded (again on resume).
        self.reference_params = load_model_params(config.model, model_config, config.seed,
                                                  self.learner.shardings.params["policy"])

    def initial_state(self) -> TrainState:
        """A fresh state: the policy starts as the reference (a copy: the update donates the state)."""
        shardings = self.learner.shardings
        policy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree), out_shardings=shardings.params["policy"])(
            self.reference_params)
        params = {"policy": policy}
        if self.config.uses_value_model:
            params["value"] = value_params_for(self.config, self.model_config, policy, shardings.params["value"])
        return create_train_state(params, self.learner.optimizer, self.config.seed, shardings)

    def host(self, state: TrainState, prompt_batch: dict) -> tuple[RolloutBatch, dict]:
        """The host part of a step, the rollout: sample responses to the prompt batch (the whole global batch, the
        same on every process) with the current policy, decode and score this process's rows, agree across hosts
        that every row was scored. Returns the rollout batch (global arrays) and the rollout's metrics."""
        started = time.perf_counter()
        rollout = self.sampler.sample(state.params["policy"], prompt_batch, self._rollout_key(state.step),
                                      self.sampling, self.config.rollout.max_new_tokens,
                                      self.config.rollout.samples_per_prompt)
        rollout_seconds = time.perf_counter() - started  # the scores are on the host: sampling has finished
        return rollout.batch, {**rollout.metrics, "rollout_seconds": rollout_seconds}

    def device(self, state: TrainState, rollout: RolloutBatch) -> tuple[TrainState, dict]:
        """The device part, pure: log-probs, values and advantages of the rollout, then the PPO updates."""
        prepared, prepare_metrics = self.learner.prepare(state.params, self.reference_params, rollout)
        state, update_metrics = self.learner.update(state, prepared)
        return state, {**prepare_metrics, **{f"train/{key}": value for key, value in update_metrics.items()},
                       "loss": update_metrics["loss"]}

    def summarize(self, metrics: dict) -> dict:
        return dict(metrics)

    def step(self, state: TrainState, prompt_batch: dict) -> tuple[TrainState, dict]:
        """The host part then the device part (what the loop runs), with the metrics of both."""
        rollout, rollout_metrics = self.host(state, prompt_batch)
        state, metrics = self.device(state, rollout)
        return state, {**rollout_metrics, **metrics}

    def evaluate(self, policy_params, prompts: Sequence[dict]) -> dict:
        """Greedy responses to held-out prompts, scored by the verifiers; ``summarize``'s per-dataset table."""
        evaluation = self.config.evaluation
        prompts = list(prompts[: evaluation.max_prompts] if evaluation.max_prompts else prompts)
        collate = rlvr_batch_fn(self.tokenizer.pad_id, self.config.data.max_prompt_len)
        greedy = SamplingConfig(temperature=0.0)
        max_new_tokens = evaluation.max_new_tokens or self.config.rollout.max_new_tokens
        scores: list[list[float]] = []
        for start in range(0, len(prompts), self.eval_batch_size):
            chunk = prompts[start : start + self.eval_batch_size]
            filler = [chunk[-1]] * (self.eval_batch_size - len(chunk))  # fixed shapes; filler rows are dropped
            result = self.eval_sampler.sample(policy_params, collate(chunk + filler), self._eval_key(), greedy,
                                         max_new_tokens, 1)
            scores.extend([float(score)] for score in result.verifier_scores[: len(chunk)])
        return summarize([{"dataset": prompt["dataset"]} for prompt in prompts], scores)


def eval_metrics(summary: dict) -> dict[str, float]:
    metrics = {"accuracy": summary["all"]["pass@1"]}
    for label, values in summary["datasets"].items():
        metrics[f"accuracy/{label}"] = values["pass@1"]
    return metrics


def make_loader(config: RLVRConfig, prompts: Sequence[dict], pad_id: int) -> BatchLoader:
    """The global prompt batch on every process: prompts are small, and each process needs every row's
    verifier label for the rows it happens to hold; decoding and scoring are what is divided."""
    return BatchLoader(list(prompts), config.rollout.prompts_per_step, seed=config.data.seed,
                       shuffle=config.data.shuffle, batch_fn=rlvr_batch_fn(pad_id, config.data.max_prompt_len))


@dataclass(frozen=True)
class RLVRData:
    """What the stage trains and evaluates on: the tokenizer, the training prompts, the held-out prompts."""

    tokenizer: Any
    prompts: Sequence[dict]
    eval_prompts: Optional[Sequence[dict]] = None


class RLVRStage(Stage):
    """RLVR on the runner: prompts, the rollout-and-update step, dev-prompt accuracy (keep-best by config),
    the policy's export. ``data`` replaces the prepared ``config.data`` (a toy task, prompts made elsewhere)."""

    def __init__(self, config: RLVRConfig, data: Optional[RLVRData] = None):
        super().__init__(config)
        self.data = data

    def prepare(self, share: WorkShare) -> StagePlan:
        config = self.config
        data = self.data or prepared_prompts(config, share)
        model_config = resolve_model_config(config.model, data.tokenizer.vocab_size)
        check_vocab(model_config, data.tokenizer.vocab_size, config.data.tokenizer)
        # Synchronous: one mesh. Asynchronous: the learner's and the sampler's sub-meshes (async_rollouts).
        mesh, sampler_mesh = sub_meshes(config) if config.rollout.async_steps else (sharding.make_mesh(config.mesh), None)
        loader = make_loader(config, data.prompts, data.tokenizer.pad_id)
        # Programs and the frozen reference.
        self.rlvr = rlvr = RLVR(config, model_config, data.tokenizer, mesh, sampler_mesh)
        step, abstract = rlvr, rlvr.learner.abstract_state()
        self.asynchronous = None
        if sampler_mesh is not None:
            self.asynchronous = step = AsyncRollouts(rlvr, loader)
            abstract = queued_state(abstract, step.abstract_queue())
        evaluation = None
        if data.eval_prompts:
            evaluation = Evaluation(lambda params: eval_metrics(rlvr.evaluate(params["policy"], data.eval_prompts)),
                                    config.evaluation.every)
        return StagePlan(
            model_config=model_config, batches=loader, total_steps=config.total_steps,
            abstract_state=abstract, step=step,
            export=chat_model_export(config, model_config, data.tokenizer, part="policy"),
            evaluation=evaluation, keep_best="accuracy" if config.evaluation.keep_best else None,
        )

    def initial_state(self) -> TrainState:
        state = self.rlvr.initial_state()
        return state if self.asynchronous is None else queued_state(state)  # the queue fills at the first step


def prepared_prompts(config: RLVRConfig, share: WorkShare) -> RLVRData:
    """``config.data`` prepared as RLVR prompts, each dataset's labels checked by its verifier."""
    data = prepare_data(config.data, kind="rlvr", log=log.info, share=share, known_datasets=rewards.label_checks())
    return RLVRData(data.tokenizer, data.train, data.eval)


def run_rlvr(config: RLVRConfig, resume: Optional[bool] = None) -> StageResult:
    """Train (or resume), checkpoint and export the policy (the best on the dev prompts under keep-best).
    ``resume=True`` insists on a checkpoint."""
    return run_stage(RLVRStage(config), resume)
