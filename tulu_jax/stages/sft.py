"""Stage 1 of Tülu 3: supervised fine-tuning on chat data, cross-entropy on assistant tokens.

Read top to bottom: config → SFT loss → jitted step → the stage on the runner (data rows, the step, the
initial state, held-out evaluation and throughput, the Hugging Face export).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Optional

import jax
import jax.numpy as jnp
import numpy as np

from data_pipeline.loader import BatchLoader, make_global_batch
from data_pipeline.work_share import WorkShare
from tulu_jax.errors import ConfigError
from tulu_jax.models import Llama, LlamaConfig, param_logical_axes, unembedding_matrix
from tulu_jax.models.params import param_shapes
from tulu_jax.objectives import chunked_token_logprobs, next_token_targets, sft_loss
from tulu_jax.objectives.sft import REDUCTIONS
from tulu_jax.sharding import batch_sharding
from tulu_jax.stages.batch_rows import prepare_batch_rows
from tulu_jax.stages.model_source import load_model_params, resolve_model_config
from tulu_jax.stages.optimizer_setup import optimizer_and_shardings
from tulu_jax.stages.runner import Stage, StagePlan, StageResult, run_stage
from tulu_jax.stages.runner.export import chat_model_export
from tulu_jax.stages.stage_config import BatchStageConfig
from tulu_jax.training.config import EVALUATION_RENAMES
from tulu_jax.training.flops import flops_per_step, peak_flops_per_second
from tulu_jax.training.hooks import Evaluation, Throughput
from tulu_jax.training.loop import DeviceStep
from tulu_jax.training.state import TrainState, abstract_state, create_train_state
from tulu_jax.training.step import (
    MeshFunction, build_eval_step, build_train_step, jit_eval_step, jit_train_step,
)

log = logging.getLogger(__name__)

BATCH_KEYS = ("input_ids", "labels", "segment_ids", "positions")


@dataclass(frozen=True)
class SFTLossConfig:
    reduction: str = "sum"  # Tülu 3: sum over trained tokens; "mean": global per-token mean
    logits_chunk_size: int = 1024  # positions whose vocabulary logits exist at once

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise ConfigError(f"objective.reduction: {self.reduction!r} is not allowed; choose one of {REDUCTIONS}")


@dataclass(frozen=True)
class SFTConfig(BatchStageConfig):
    RENAMED_KEYS: ClassVar[dict] = {"loss": "objective", **EVALUATION_RENAMES}

    output_dir: str = "runs/sft"
    objective: SFTLossConfig = field(default_factory=SFTLossConfig)


def make_sft_loss(model_config: LlamaConfig, loss: SFTLossConfig):
    """``loss_fn(params, batch, context)`` for the generic step; mean reduction reads the global token count."""
    model = Llama(model_config)

    def loss_fn(params, batch, context):
        hidden = model.apply(
            {"params": params}, batch["input_ids"], positions=batch["positions"],
            segment_ids=batch["segment_ids"], return_hidden=True,
        )  # [batch, length, embed]
        targets, loss_mask = next_token_targets(batch["labels"], batch["segment_ids"])
        logprobs = chunked_token_logprobs(
            hidden, unembedding_matrix(params, model_config), targets,
            chunk_size=loss.logits_chunk_size, compute_dtype=jnp.dtype(model_config.compute_dtype),
        )
        value, metrics = sft_loss(logprobs, loss_mask, loss.reduction, context.get("global_trained_tokens"))
        return value, {"loss_sum": metrics["loss_sum"], "trained_tokens": metrics["trained_tokens"]}

    return loss_fn


def global_token_count(batch) -> dict:
    """Trained tokens of the whole batch, computed before the micro-batch scan (for the mean reduction)."""
    _, loss_mask = next_token_targets(batch["labels"], batch["segment_ids"])
    return {"global_trained_tokens": jnp.sum(loss_mask)}


def summarize(metrics: dict) -> dict:
    """Per-token cross-entropy as ``loss`` (what one reads), the optimised quantity as ``objective``."""
    tokens = max(metrics.get("trained_tokens", 0.0), 1.0)
    shown = {"loss": metrics["loss_sum"] / tokens, "objective": metrics["loss"], "trained_tokens": metrics["trained_tokens"]}
    for key in ("grad_norm", "learning_rate"):
        if key in metrics:
            shown[key] = metrics[key]
    return shown


# The schedule's length changes no shape and no compiled operation: what a plan compiles with.
PLANNED_TOTAL_STEPS = 1000


@dataclass(frozen=True)
class SFTStep:
    """The jitted SFT step and what it is made of; ``abstract_inputs()`` lowers it without data or weights."""

    step: MeshFunction  # (state, batch) -> (state, metrics), the state donated
    loss_fn: Callable
    optimizer: Any
    schedule: Any
    shardings: TrainState  # NamedShardings of the train state
    param_shapes: Any
    batch_shape: tuple[int, int]  # [batch_size, max_seq_len] of every batch array

    def abstract_state(self) -> TrainState:
        return abstract_state(self.optimizer, self.param_shapes, self.shardings)

    def abstract_inputs(self) -> tuple[TrainState, dict]:
        """Sharded ``ShapeDtypeStruct``s of ``(state, batch)``: what a plan compiles the step for."""
        sharding = batch_sharding(self.step.mesh)
        batch = {key: jax.ShapeDtypeStruct(self.batch_shape, jnp.int32, sharding=sharding) for key in BATCH_KEYS}
        return self.abstract_state(), batch


def build_sft_step(config: SFTConfig, mesh, model_config: Optional[LlamaConfig] = None,
                   total_steps: int = PLANNED_TOTAL_STEPS) -> SFTStep:
    """The SFT step for ``mesh``: what ``run_sft`` trains with and ``tulu-jax plan`` compiles.

    ``model_config`` defaults to the config's model resolved without a tokenizer (the planner's case).
    """
    model_config = model_config or resolve_model_config(config.model)
    shapes = param_shapes(model_config)
    schedule, optimizer, shardings = optimizer_and_shardings(config, mesh, shapes, param_logical_axes(model_config),
                                                             total_steps)
    loss_fn = make_sft_loss(model_config, config.objective)
    step = jit_train_step(
        build_train_step(loss_fn, optimizer, schedule, config.training.micro_batches, global_token_count, mesh),
        mesh, shardings, BATCH_KEYS,
    )
    return SFTStep(step, loss_fn, optimizer, schedule, shardings, shapes,
                   (config.training.batch_size, config.data.max_seq_len))


class SFTStage(Stage):
    """SFT on the runner: chat rows, the SFT step, held-out per-token loss, throughput, the chat-model export."""

    def prepare(self, share: WorkShare) -> StagePlan:
        config = self.config
        rows = prepare_batch_rows(config, "sft", share)
        # Optimizer, train-state shardings and the jitted step: the builder the planner compiles too.
        self.built = build_sft_step(config, rows.mesh, rows.model_config, rows.total_steps)
        self.model_config = rows.model_config
        sharding = batch_sharding(rows.mesh)
        peak, source = peak_flops_per_second(config.training.peak_flops_per_device)
        log.info("peak FLOP/s for MFU: %.3g (%s)", peak * jax.process_count(), source)
        seq_len = config.data.max_seq_len
        throughput = Throughput(
            tokens_per_step=config.training.batch_size * seq_len,
            flops_per_step=flops_per_step(rows.model_config, config.training.batch_size, seq_len),
            peak_flops=peak * jax.process_count(),
        )
        evaluate = _evaluator(config, rows.eval_rows, self.built.loss_fn, rows.mesh, self.built.shardings.params,
                              rows.micro_batch)
        return StagePlan(
            model_config=rows.model_config, batches=rows.loader, total_steps=rows.total_steps,
            abstract_state=self.built.abstract_state(),
            step=DeviceStep(self.built.step, lambda batch: make_global_batch(numpy_batch(batch), sharding), summarize),
            export=chat_model_export(config, rows.model_config, rows.prepared.tokenizer),
            evaluation=Evaluation(evaluate, config.evaluation.every) if evaluate is not None else None,
            hooks=(throughput,),
        )

    def initial_state(self) -> TrainState:
        config, built = self.config, self.built
        params = load_model_params(config.model, self.model_config, config.seed, built.shardings.params)
        return create_train_state(params, built.optimizer, config.seed, built.shardings)


def run_sft(config: SFTConfig, resume: Optional[bool] = None) -> StageResult:
    """Train, checkpoint and export to ``<output_dir>/hf``. ``resume=True`` insists on a checkpoint."""
    return run_stage(SFTStage(config), resume)


def numpy_batch(batch: dict) -> dict:
    """Only the numeric arrays of a loader batch (the step takes nothing else)."""
    return {key: value for key, value in batch.items() if isinstance(value, np.ndarray) and value.dtype != object}


def _evaluator(config: SFTConfig, eval_rows, loss_fn, mesh, param_shardings, micro_batch: int):
    """params -> held-out metrics (per-token loss), or None when there is no held-out split."""
    if eval_rows is None:
        return None
    if len(eval_rows["input_ids"]) < micro_batch:
        log.warning("the evaluation split has %d rows, fewer than one batch of %d: no evaluation",
                    len(eval_rows["input_ids"]), micro_batch)
        return None
    eval_fn = jit_eval_step(build_eval_step(loss_fn, global_token_count), mesh, param_shardings, BATCH_KEYS)
    sharding = batch_sharding(mesh)

    def evaluate(params) -> dict:
        loader = BatchLoader(eval_rows, micro_batch // jax.process_count(), shuffle=False, num_epochs=1,
                             process_index=jax.process_index(), process_count=jax.process_count())
        loss_sum = tokens = 0.0
        for index, batch in enumerate(loader):
            if config.evaluation.max_batches is not None and index >= config.evaluation.max_batches:
                break
            metrics = jax.device_get(eval_fn(params, make_global_batch(numpy_batch(batch), sharding)))
            loss_sum += float(metrics["loss_sum"])
            tokens += float(metrics["trained_tokens"])
        return {"loss": loss_sum / max(tokens, 1.0), "trained_tokens": tokens}

    return evaluate
