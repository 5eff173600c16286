"""RLVR: reinforcement learning with verifiable rewards (Tülu 3 PPO, or GRPO by config), RECIPE.md section 7.

One step of this stage takes a batch of prompts and
  1. samples responses with the current policy (the in-JAX sampler, on the training mesh),
  2. decodes them and scores them with the verifier each prompt's ``dataset`` names,
  3. computes the policy's, the frozen reference's and (PPO) the value model's per-token outputs,
  4. forms advantages (GAE over KL-penalised rewards for PPO; group-normalised scores for GRPO),
  5. runs ``ppo.epochs`` passes of ``ppo.minibatches`` clipped-loss updates,
and returns metrics. ``run`` drives the steps with checkpoint/resume and periodic held-out evaluation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from data_pipeline.chat_template import TULU_CHAT_TEMPLATE
from data_pipeline.loader import BatchLoader
from data_pipeline.pipeline import rlvr_batch_fn
from tulu_jax import sharding
from tulu_jax.config import to_dict
from tulu_jax.errors import ConfigError
from tulu_jax.generation import SamplingConfig
from tulu_jax.generation.evaluate import summarize
from tulu_jax.generation.text import stop_ids_for
from tulu_jax.models import LlamaConfig, param_logical_axes
from tulu_jax.models.value_head import scalar_head_logical_axes
from tulu_jax.stages.common import EXPORT_DIR, export_hf, model_directory
from tulu_jax.stages.rlvr_config import RLVRConfig
from tulu_jax.stages.rlvr_learner import (
    build_prepare_fn, build_update_fn, make_rl_optimizer, rl_state_shardings, sequence_arrays, value_params_for,
)
from tulu_jax.stages.rlvr_rollout import RolloutResult, repeat_prompts, rollout_metrics, run_rollout
from tulu_jax.training.state import TrainState, create_train_state
from tulu_jax.training.step import jit_train_step

ROLLOUT_KEY_SALT = 0x5EED
# Per-token arrays of a rollout handed to the learner ([rows, columns]); "scores" is [rows].
ROLLOUT_ARRAYS = ("input_ids", "positions", "segment_ids", "response_mask", "sampler_logprobs")


class RLVRStage:
    """The RLVR step and its state: ``step(prompt_batch) -> metrics`` advances ``self.state``."""

    def __init__(
        self,
        config: RLVRConfig,
        model_config: LlamaConfig,
        tokenizer,
        policy_params: Any,
        mesh: Optional[Mesh] = None,
    ):
        self.config, self.model_config, self.tokenizer = config, model_config, tokenizer
        self.mesh = mesh if mesh is not None else sharding.make_mesh(config.mesh)
        sharding.check_batch_divisible(config.rollout.responses_per_step, self.mesh, "rollout responses per step")
        sharding.check_batch_divisible(
            config.rollout.responses_per_step // (config.ppo.minibatches * config.ppo.micro_batches),
            self.mesh, "rows per PPO micro-batch",
        )
        self.prompt_length = config.data.max_prompt_len
        self.stop_ids = stop_ids_for(tokenizer, model_config)
        self.best: Optional[tuple[int, float, Any]] = None  # (rollout step, held-out accuracy, host policy params)
        self.sampling = SamplingConfig(config.rollout.temperature, config.rollout.top_k, config.rollout.top_p)

        params = {"policy": policy_params}
        value_params = value_params_for(config, model_config, policy_params, config.seed)
        axes = {"policy": param_logical_axes(model_config)}
        if value_params is not None:
            params["value"] = value_params
            axes["value"] = scalar_head_logical_axes(model_config)
        shapes = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf), jnp.asarray(leaf).dtype), params)
        self.optimizer, self.schedule = make_rl_optimizer(config, config.total_steps * config.updates_per_step)
        self.shardings = rl_state_shardings(self.mesh, self.optimizer, shapes, axes)
        with sharding.activate(self.mesh):
            self.state: TrainState = create_train_state(params, self.optimizer, config.seed, self.shardings)
            # A copy, not an alias: the train step donates the state's buffers.
            self.reference_params = jax.jit(
                lambda tree: jax.tree.map(jnp.copy, tree), out_shardings=self.shardings.params["policy"]
            )(self.state.params["policy"])

        rows, columns = sharding.batch_sharding(self.mesh, 1), sharding.batch_sharding(self.mesh, 2)
        self._rollout_shardings = {key: columns for key in ROLLOUT_ARRAYS} | {"scores": rows}
        prepare = build_prepare_fn(config, model_config, self.prompt_length)
        self._prepare = jax.jit(
            prepare,
            in_shardings=(self.shardings.params, self.shardings.params["policy"], self._rollout_shardings),
            out_shardings=(columns, sharding.replicated(self.mesh)),
        )
        update = build_update_fn(config, model_config, self.prompt_length, self.optimizer, self.schedule, self.mesh)
        learner_keys = ("input_ids", "positions", "segment_ids", "response_mask", "old_logprobs",
                        "reference_logprobs", "advantages")
        if value_params is not None:
            learner_keys += ("old_values", "returns")
        self._update = jit_train_step(update, self.mesh, self.shardings, learner_keys)

    def consider_best(self, accuracy: float) -> None:
        """Remember the policy when it beats every earlier evaluation (used with ``evaluation.keep_best``)."""
        if not self.config.evaluation.keep_best or (self.best is not None and accuracy <= self.best[1]):
            return
        self.best = (self.rollout_step, accuracy, jax.device_get(self.state.params["policy"]))

    @property
    def rollout_step(self) -> int:
        """Rollout steps taken (the state counts optimizer updates)."""
        return int(self.state.step) // self.config.updates_per_step

    def rollout(self, prompt_batch: dict, key: jax.Array, sampling: Optional[SamplingConfig] = None,
                max_new_tokens: Optional[int] = None, samples_per_prompt: Optional[int] = None) -> RolloutResult:
        rollout = self.config.rollout
        batch = repeat_prompts(prompt_batch, samples_per_prompt or rollout.samples_per_prompt)
        return run_rollout(
            self.state.params["policy"], self.model_config, self.tokenizer, batch, key,
            sampling=sampling or self.sampling, max_new_tokens=max_new_tokens or rollout.max_new_tokens,
            stop_ids=self.stop_ids, alpha=rollout.verifiable_reward, nonstop_penalty=rollout.nonstop_penalty,
            mesh=self.mesh,
        )

    def step(self, prompt_batch: dict) -> dict[str, float]:
        """One rollout batch and its PPO/GRPO updates; returns host-side metrics."""
        started = time.perf_counter()
        key = jax.random.fold_in(jax.random.PRNGKey(self.config.seed + ROLLOUT_KEY_SALT), self.rollout_step)
        rollout = self.rollout(prompt_batch, key)
        rollout_done = time.perf_counter()

        device_batch = {
            **sequence_arrays(rollout.prompt_ids, rollout.prompt_mask, rollout.response_tokens, rollout.response_mask),
            "response_mask": rollout.response_mask,
            "scores": rollout.sequence_scores,
            "sampler_logprobs": rollout.sampler_logprobs,
        }
        device_batch = {key: jax.device_put(np.asarray(value), self._rollout_shardings[key])
                        for key, value in device_batch.items()}
        with sharding.activate(self.mesh):
            learner_batch, prepare_metrics = self._prepare(self.state.params, self.reference_params, device_batch)
        self.state, update_metrics = self._update(self.state, learner_batch)
        prepare_metrics, update_metrics = jax.device_get((prepare_metrics, update_metrics))
        finished = time.perf_counter()

        metrics = rollout_metrics(rollout)
        metrics.update({key: float(value) for key, value in prepare_metrics.items()})
        metrics.update({f"train/{key}": float(value) for key, value in update_metrics.items()})
        metrics.update(rollout_seconds=rollout_done - started, train_seconds=finished - rollout_done)
        return metrics

    def evaluate(self, eval_prompts: Sequence[dict]) -> dict:
        """Greedy responses to held-out prompts, scored by the verifiers; ``summarize``'s per-dataset table."""
        evaluation = self.config.evaluation
        prompts = list(eval_prompts[: evaluation.max_prompts] if evaluation.max_prompts else eval_prompts)
        batch_size = evaluation.batch_size or self.config.rollout.prompts_per_step
        collate = rlvr_batch_fn(self.tokenizer.pad_id, self.prompt_length)
        greedy = SamplingConfig(temperature=0.0)
        scores: list[list[float]] = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            filler = [chunk[-1]] * (batch_size - len(chunk))  # fixed shapes; filler rows are dropped
            result = self.rollout(
                collate(chunk + filler), jax.random.PRNGKey(0), sampling=greedy,
                max_new_tokens=evaluation.max_new_tokens or self.config.rollout.max_new_tokens, samples_per_prompt=1,
            )
            scores.extend([float(score)] for score in result.verifier_scores[: len(chunk)])
        return summarize([{"dataset": prompt["dataset"]} for prompt in prompts], scores)


def eval_metrics(summary: dict) -> dict[str, float]:
    metrics = {"eval/accuracy": summary["all"]["pass@1"]}
    for label, values in summary["datasets"].items():
        metrics[f"eval/accuracy/{label}"] = values["pass@1"]
    return metrics


def make_loader(config: RLVRConfig, prompts: Sequence[dict], pad_id: int) -> BatchLoader:
    return BatchLoader(
        list(prompts), config.rollout.prompts_per_step, seed=config.data.seed, shuffle=config.data.shuffle,
        process_index=jax.process_index(), process_count=jax.process_count(),
        batch_fn=rlvr_batch_fn(pad_id, config.data.max_prompt_len),
    )


def run_stage(
    stage: RLVRStage,
    train_prompts: Sequence[dict],
    eval_prompts: Optional[Sequence[dict]] = None,
    *,
    log: Callable[[str], None] = print,
    stop_after: Optional[int] = None,
    output_dir: Optional[str] = None,
    progress_bar: bool = False,
) -> list[dict]:
    """Run (or resume) the stage to ``config.total_steps`` rollout steps on the shared training loop.

    Returns each step's metrics. Checkpoints (policy, value, optimizer states, step, rng, data-iterator
    state, config) go to ``output_dir/checkpoints`` every ``checkpoint.save_every`` rollout steps and at the
    end; metrics go to ``output_dir/metrics.jsonl``. ``stop_after`` ends the run after that many rollout
    steps in total (to test resumption); ``output_dir`` replaces ``config.output_dir``.
    """
    from tulu_jax.checkpoint import Checkpointer
    from tulu_jax.training.loop import LoopSpec, run_training
    from tulu_jax.training.metrics import MetricsLogger

    config = stage.config
    if jax.process_count() > 1:
        raise ConfigError("the RLVR stage runs on one host for now (rollout scoring gathers the batch on it)")
    output_dir = Path(output_dir or config.output_dir)
    loader = make_loader(config, train_prompts, stage.tokenizer.pad_id)
    checkpointer = Checkpointer(output_dir / "checkpoints", config.checkpoint)
    if config.checkpoint.resume:
        target = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), stage.state)
        restored = checkpointer.restore_latest(target)
        if restored is not None:
            stage.state = restored.state
            loader.set_state(restored.data_state)
            log(f"resumed from rollout step {restored.step}")
    history: list[dict] = []

    def step_fn(state, prompt_batch):
        stage.state = state
        metrics = stage.step(prompt_batch)
        metrics["loss"] = metrics["train/loss"]
        history.append({**metrics, "step": stage.rollout_step})
        if config.log_every and stage.rollout_step % config.log_every == 0:
            log(format_metrics(history[-1]))
        return stage.state, metrics

    evaluate = None
    if eval_prompts:
        def evaluate(_params) -> dict:
            metrics = {key.removeprefix("eval/"): value for key, value in eval_metrics(stage.evaluate(eval_prompts)).items()}
            stage.consider_best(metrics["accuracy"])
            return metrics

    logger = MetricsLogger(output_dir, tensorboard=True)
    if evaluate is not None and config.evaluation.keep_best and stage.best is None:
        start = evaluate(None)
        logger.log(stage.rollout_step, {f"eval/{key}": value for key, value in start.items()}, echo=False)
        log(f"dev-prompt accuracy of the starting policy: {start['accuracy']:.4f}")
    end = config.total_steps if stop_after is None else min(stop_after, config.total_steps)
    spec = LoopSpec(
        total_steps=end,
        to_device=lambda batch: batch,  # the stage places rollouts on the mesh itself
        logger=logger,
        log_every=config.log_every or 1,
        checkpointer=checkpointer,
        save_every=config.checkpoint.save_every,
        run_config=to_dict(config),
        evaluate=evaluate,
        eval_every=config.evaluation.every,
        progress_bar=progress_bar,
        steps_done=lambda state: int(jax.device_get(state.step)) // config.updates_per_step,
    )
    try:
        stage.state = run_training(stage.state, step_fn, loader, spec)
    finally:
        logger.close()
        checkpointer.close()
    return history


KEY_METRICS = ("reward", "accuracy", "kl", "train/policy_loss", "train/value_loss", "train/clip_fraction", "entropy",
               "response_length", "stop_rate", "rollout_seconds", "train_seconds", "eval/accuracy")


def format_metrics(metrics: dict) -> str:
    shown = [f"{key}={metrics[key]:.4g}" for key in KEY_METRICS if key in metrics]
    return f"rlvr step {metrics.get('step', '?')}: " + " ".join(shown)


def load_policy(config: RLVRConfig, tokenizer) -> tuple[LlamaConfig, Any]:
    """The starting policy (also the reference): a Hugging Face directory, or a random ``preset`` model."""
    from tulu_jax.models import init_params, preset

    overrides = dict(config.policy.model)
    if config.policy.path:
        from tulu_jax.hf import load_hf_checkpoint

        # A Hugging Face directory, or an earlier stage's output_dir (its hf/ export).
        return load_hf_checkpoint(model_directory(config.policy.path), **overrides)
    overrides.setdefault("vocab_size", max(preset(config.policy.preset).vocab_size, tokenizer.vocab_size))
    overrides.setdefault("eos_token_id", tokenizer.eos_id)
    overrides.setdefault("pad_token_id", tokenizer.pad_id)
    model_config = preset(config.policy.preset, **overrides)
    return model_config, init_params(model_config, jax.random.PRNGKey(config.seed))


def run_from_config(config: RLVRConfig, log: Callable[[str], None] = print) -> list[dict]:
    """Prepare the RLVR prompts, load the policy, build the stage and run it (resuming when possible)."""
    from data_pipeline.pipeline import prepare_data

    data = prepare_data(config.data, kind="rlvr", log=log)
    model_config, policy_params = load_policy(config, data.tokenizer)
    if data.tokenizer.vocab_size > model_config.vocab_size:
        raise ConfigError(
            f"the tokenizer {config.data.tokenizer} has {data.tokenizer.vocab_size} tokens but the policy only "
            f"{model_config.vocab_size} embeddings; use the policy's own tokenizer"
        )
    stage = RLVRStage(config, model_config, data.tokenizer, policy_params)
    history = run_stage(stage, data.train, data.eval, log=log, progress_bar=True)
    tokenizer = data.tokenizer
    special_ids = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}
    chat_template = TULU_CHAT_TEMPLATE if config.data.chat_template == "tulu" else None
    policy = stage.state.params["policy"]
    if stage.best is not None:
        step, accuracy, policy = stage.best
        log(f"exporting the best policy on the dev prompts: rollout step {step} (accuracy {accuracy:.4f})")
    export_hf(Path(config.output_dir) / EXPORT_DIR, policy, model_config, config.data.tokenizer,
              chat_template, special_ids, to_dict(config))
    return history
