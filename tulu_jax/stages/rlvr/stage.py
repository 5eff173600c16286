"""Stage 3 of Tülu 3: RLVR, reinforcement learning with verifiable rewards (PPO by default, RECIPE.md section 7).

Read top to bottom: config → prompts → policy, frozen reference and value model (all sharded) → optimizers
and train state (fresh or resumed) → the step → the shared loop with evaluation and keep-best → export.

One step (``RLVR.step``, a pure ``state, prompt_batch -> state, metrics``) takes a batch of prompts and
  1. samples responses with the current policy on the global mesh (``rollout.Sampler``),
  2. decodes and scores, on each process, only the rows that process's devices hold,
  3. computes the policy's, the reference's and (when the estimator needs one) the value model's per-token
     outputs and the advantages (``learner.build_prepare_fn``),
  4. runs ``ppo.epochs`` passes of ``ppo.minibatches`` clipped-loss updates (``learner.build_update_fn``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from data_pipeline.chat_template import TULU_CHAT_TEMPLATE
from data_pipeline.loader import BatchLoader
from data_pipeline.paths import as_path
from data_pipeline.pipeline import rlvr_batch_fn
from tulu_jax import distributed, rewards, sharding
from tulu_jax.checkpoint import CheckpointConfig, Checkpointer
from tulu_jax.config import to_yaml
from tulu_jax.generation import SamplingConfig
from tulu_jax.generation.evaluate import summarize
from tulu_jax.generation.text import stop_ids_for
from tulu_jax.models import LlamaConfig, param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.models.value_head import init_scalar_head_params, scalar_head_logical_axes
from tulu_jax.stages.common import (
    EXPORT_DIR, check_vocab, data_work_share, export_hf, load_model_params, resolve_model_config, resume_state,
    run_config_dict,
)
from tulu_jax.stages.same_run import start_stage
from tulu_jax.stages.rlvr.config import RLVRConfig
from tulu_jax.stages.rlvr.learner import (
    build_prepare_fn, build_update_fn, make_rl_optimizer, rl_state_shardings, value_params_for,
)
from tulu_jax.generation.continuous import DecodeSlots
from tulu_jax.stages.rlvr.rollout import RolloutBatch, Sampler
from tulu_jax.training.loop import LoopSpec, run_training
from tulu_jax.training.metrics import MetricsLogger
from tulu_jax.training.state import TrainState, abstract_state, create_train_state
from tulu_jax.training.step import MeshFunction

log = logging.getLogger(__name__)

ROLLOUT_KEY_SALT = 0x5EED
BEST_DIR = "best"  # keep-best: the best policy on the dev prompts, one checkpoint step


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

    def __init__(self, config: RLVRConfig, model_config: LlamaConfig, tokenizer, mesh: Mesh):
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
        self.sampler = Sampler(model_config, tokenizer, mesh, stop_ids_for(tokenizer, model_config),
                               rollout.verifiable_reward, rollout.nonstop_penalty, rollout.sampling_group,
                               DecodeSlots(rollout.decode_slots, rollout.page_size), rollout.sampler == "static")
        self.sampling = SamplingConfig(rollout.temperature, rollout.top_k, rollout.top_p)
        replicated = sharding.replicated(mesh)
        base_key = jax.random.PRNGKey(config.seed + ROLLOUT_KEY_SALT)
        self._rollout_key = jax.jit(lambda step: jax.random.fold_in(base_key, step), out_shardings=replicated)
        self._eval_key = jax.jit(lambda: jax.random.PRNGKey(0), out_shardings=replicated)
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

    def step(self, state: TrainState, prompt_batch: dict) -> tuple[TrainState, dict]:
        """One rollout batch and its updates: ``state, prompt_batch -> state, metrics`` (the prompt batch is the
        whole global batch, the same on every process)."""
        started = time.perf_counter()
        rollout = self.sampler.sample(state.params["policy"], prompt_batch, self._rollout_key(state.step),
                                      self.sampling, self.config.rollout.max_new_tokens,
                                      self.config.rollout.samples_per_prompt)
        rollout_seconds = time.perf_counter() - started  # the scores are on the host: sampling has finished
        prepared, prepare_metrics = self.learner.prepare(state.params, self.reference_params, rollout.batch)
        state, update_metrics = self.learner.update(state, prepared)
        metrics = {**rollout.metrics, **prepare_metrics, **{f"train/{key}": value for key, value in update_metrics.items()}}
        metrics.update(loss=update_metrics["loss"], rollout_seconds=rollout_seconds)
        return state, metrics

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
            result = self.sampler.sample(policy_params, collate(chunk + filler), self._eval_key(), greedy,
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


class BestPolicy:
    """Keep-best: the policy that scored best on the dev prompts, saved as a checkpoint step of its own
    (``output_dir/best/<rollout step>``, one kept); its dev accuracy is saved beside it."""

    def __init__(self, directory, run_config: dict):
        self.checkpointer = Checkpointer(directory, CheckpointConfig(keep=1, async_save=False))
        self.run_config = run_config
        steps = self.checkpointer.steps()
        saved = self.checkpointer.saved_config(steps[-1]) if steps else None
        self.step = steps[-1] if steps else None
        self.accuracy = float(saved["dev_accuracy"]) if saved else None

    def consider(self, step: int, accuracy: float, policy_params) -> None:
        better = self.accuracy is None or accuracy > self.accuracy
        if distributed.agreed("rlvr keep best", "1" if better else "0") != "1":
            return
        self.checkpointer.save(step, {"policy": policy_params}, {}, {**self.run_config, "dev_accuracy": accuracy},
                               force=True)
        self.checkpointer.wait()
        self.step, self.accuracy = step, accuracy

    def restore(self, abstract_policy) -> Any:
        return self.checkpointer.restore(self.step, {"policy": abstract_policy}).state["policy"]


def run_rlvr(config: RLVRConfig, resume: Optional[bool] = None, *, tokenizer=None, prompts=None,
             eval_prompts=None, stop_after: Optional[int] = None) -> Path:
    """Train (or resume), checkpoint and export; returns the export directory.

    ``resume=True`` insists on a checkpoint. ``tokenizer``/``prompts``/``eval_prompts`` replace the prepared
    data (tests with a toy task); ``stop_after`` ends the run after that many rollout steps (no export).
    """
    start_stage(config)
    output_dir = as_path(config.output_dir)
    is_writer = jax.process_index() == 0
    if is_writer:
        output_dir.mkdir(parents=True, exist_ok=True)

    # Prompts, and the policy's config.
    if prompts is None:
        from data_pipeline.pipeline import prepare_data

        data = prepare_data(config.data, kind="rlvr", log=log.info, share=data_work_share(config.output_dir),
                            known_datasets=rewards.label_checks())
        tokenizer, prompts, eval_prompts = data.tokenizer, data.train, data.eval
    model_config = resolve_model_config(config.model, tokenizer.vocab_size)
    check_vocab(model_config, tokenizer.vocab_size, config.data.tokenizer)
    mesh = sharding.make_mesh(config.mesh)
    loader = make_loader(config, prompts, tokenizer.pad_id)

    # Programs, the frozen reference, and the state (fresh or resumed).
    stage = RLVR(config, model_config, tokenizer, mesh)
    run_config = run_config_dict(config, model_config)
    if is_writer:
        (output_dir / "config.yaml").write_text(to_yaml(config))
    checkpointer = Checkpointer(output_dir / "checkpoints", config.checkpoint)
    state = resume_state(checkpointer, config.checkpoint.resume, resume, stage.learner.abstract_state(), loader,
                         run_config=run_config)
    if state is None:
        state = stage.initial_state()

    logger = MetricsLogger(output_dir, tensorboard=config.training.tensorboard,
                           wandb_project=config.training.wandb_project, run_config=run_config)
    evaluate, best = None, None
    if eval_prompts:
        best = BestPolicy(output_dir / BEST_DIR, run_config) if config.evaluation.keep_best else None

        def evaluate(params) -> dict:
            metrics = eval_metrics(stage.evaluate(params["policy"], eval_prompts))
            if best is not None:  # the loop evaluates step s when the loader has handed out s batches
                best.consider(loader.step, metrics["accuracy"], params["policy"])
            return metrics

        if best is not None and best.step is None:
            start = evaluate(state.params)  # the starting policy is a candidate too (rollout step 0)
            logger.log(0, {f"eval/{key}": value for key, value in start.items()}, echo=False)
            log.info("dev-prompt accuracy of the starting policy: %.4f", start["accuracy"])
    end = config.total_steps if stop_after is None else min(stop_after, config.total_steps)
    spec = LoopSpec(
        total_steps=end,
        to_device=lambda batch: batch,  # the step places the prompts on the mesh itself
        logger=logger,
        log_every=config.training.log_every,
        checkpointer=checkpointer,
        save_every=config.checkpoint.save_every,
        run_config=run_config,
        evaluate=evaluate,
        eval_every=config.evaluation.every,
        progress_bar=config.training.progress_bar,
    )
    try:
        state = run_training(state, stage.step, loader, spec)
    finally:
        logger.close()
        checkpointer.close()
    if stop_after is not None and end < config.total_steps:
        return output_dir / EXPORT_DIR

    policy = state.params["policy"]
    if best is not None and best.step is not None:
        log.info("exporting the best policy on the dev prompts: rollout step %d (accuracy %.4f)", best.step,
                 best.accuracy)
        abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding),
                                policy)
        del state, policy
        policy = best.restore(abstract)
    special_ids = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}
    chat_template = TULU_CHAT_TEMPLATE if config.data.chat_template == "tulu" else None
    return export_hf(output_dir / EXPORT_DIR, policy, model_config, config.data.tokenizer, chat_template,
                     special_ids, run_config)

