"""Stage 1 of Tülu 3: supervised fine-tuning on chat data, cross-entropy on assistant tokens.

Read top to bottom: config → data rows → model → optimizer and train state (fresh or resumed) →
SFT loss → jitted step → the shared loop → Hugging Face export.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from data_pipeline.paths import as_path
from data_pipeline.chat_template import TULU_CHAT_TEMPLATE
from data_pipeline.config import DataConfig
from data_pipeline.loader import BatchLoader, make_global_batch
from data_pipeline.pipeline import prepare_data
from tulu_jax.checkpoint import CheckpointConfig, Checkpointer
from tulu_jax.config import to_yaml
from tulu_jax.errors import ConfigError
from tulu_jax.models import Llama, LlamaConfig, param_logical_axes, unembedding_matrix
from tulu_jax.models.params import param_shapes
from tulu_jax.objectives import chunked_token_logprobs, next_token_targets, sft_loss
from tulu_jax.objectives.sft import REDUCTIONS
from tulu_jax.sharding import MeshConfig, batch_sharding, check_batch_divisible, make_mesh
from tulu_jax.stages.common import (
    EXPORT_DIR,
    ModelConfig,
    check_vocab,
    data_work_share,
    export_hf,
    load_model_params,
    numpy_batch,
    resolve_model_config,
    resume_state,
    run_config_dict,
)
from tulu_jax.stages.same_run import start_stage
from tulu_jax.training.config import TrainingConfig
from tulu_jax.training.flops import flops_per_step, peak_flops_per_second
from tulu_jax.training.loop import LoopSpec, run_training
from tulu_jax.training.metrics import MetricsLogger
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule
from tulu_jax.training.state import TrainState, abstract_state, create_train_state, state_shardings
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
            raise ConfigError(f"loss.reduction: {self.reduction!r} is not allowed; choose one of {REDUCTIONS}")


@dataclass(frozen=True)
class SFTConfig:
    output_dir: str = "runs/sft"
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: SFTLossConfig = field(default_factory=SFTLossConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)


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
    schedule = make_schedule(config.optimizer.learning_rate, config.schedule, total_steps)
    optimizer = make_optimizer(config.optimizer, schedule)
    shapes, axes = param_shapes(model_config), param_logical_axes(model_config)
    shardings = state_shardings(mesh, optimizer, shapes, axes)
    loss_fn = make_sft_loss(model_config, config.loss)
    step = jit_train_step(
        build_train_step(loss_fn, optimizer, schedule, config.training.micro_batches, global_token_count, mesh),
        mesh, shardings, BATCH_KEYS,
    )
    return SFTStep(step, loss_fn, optimizer, schedule, shardings, shapes,
                   (config.training.batch_size, config.data.max_seq_len))


def run_sft(config: SFTConfig, resume: Optional[bool] = None) -> Path:
    """Train, checkpoint and export; returns the export directory. ``resume=True`` insists on a checkpoint."""
    start_stage(config)
    output_dir = as_path(config.output_dir)
    is_writer = jax.process_index() == 0
    if is_writer:
        output_dir.mkdir(parents=True, exist_ok=True)

    # Data: token rows and the checkpointable loader.
    prepared = prepare_data(config.data, kind="sft", log=log.info, share=data_work_share(config.output_dir))
    model_config = resolve_model_config(config.model, prepared.tokenizer.vocab_size)
    check_vocab(model_config, prepared.tokenizer.vocab_size, config.data.tokenizer)
    mesh = make_mesh(config.mesh)
    micro_batch = config.training.batch_size // config.training.micro_batches
    check_batch_divisible(micro_batch, mesh, "micro-batch size (training.batch_size / training.micro_batches)")
    per_process = config.training.batch_size // jax.process_count()
    loader = BatchLoader(prepared.train, per_process, seed=config.data.seed, shuffle=config.data.shuffle,
                         process_index=jax.process_index(), process_count=jax.process_count())
    total_steps = config.training.total_steps(loader.steps_per_epoch)

    # Optimizer, train-state shardings and the jitted step: the builder the planner compiles too.
    built = build_sft_step(config, mesh, model_config, total_steps)
    optimizer, shardings, step_fn = built.optimizer, built.shardings, built.step
    run_config = run_config_dict(config, model_config)
    if is_writer:
        (output_dir / "config.yaml").write_text(to_yaml(config))

    # Fresh or resumed state.
    checkpointer = Checkpointer(output_dir / "checkpoints", config.checkpoint)
    state = resume_state(checkpointer, config.checkpoint.resume, resume, built.abstract_state(), loader,
                         run_config=run_config)
    if state is None:
        params = load_model_params(config.model, model_config, config.seed, shardings.params)
        state = create_train_state(params, optimizer, config.seed, shardings)

    loss_fn = built.loss_fn
    evaluate = _evaluator(config, prepared.eval, loss_fn, mesh, shardings.params, micro_batch)

    sharding = batch_sharding(mesh)
    seq_len = config.data.max_seq_len
    peak, source = peak_flops_per_second(config.training.peak_flops_per_device)
    log.info("peak FLOP/s for MFU: %.3g (%s)", peak * jax.process_count(), source)
    logger = MetricsLogger(output_dir, tensorboard=config.training.tensorboard,
                           wandb_project=config.training.wandb_project, run_config=run_config)
    spec = LoopSpec(
        total_steps=total_steps,
        to_device=lambda batch: make_global_batch(numpy_batch(batch), sharding),
        logger=logger,
        summarize=summarize,
        log_every=config.training.log_every,
        checkpointer=checkpointer,
        save_every=config.checkpoint.save_every,
        run_config=run_config,
        evaluate=evaluate,
        eval_every=config.training.eval_every,
        flops_per_step=flops_per_step(model_config, config.training.batch_size, seq_len),
        peak_flops=peak * jax.process_count(),
        tokens_per_step=config.training.batch_size * seq_len,
        batch_record=output_dir / "batches.jsonl" if config.training.record_batches else None,
        progress_bar=config.training.progress_bar,
    )
    try:
        state = run_training(state, step_fn, loader, spec)
    finally:
        logger.close()
        checkpointer.close()

    tokenizer = prepared.tokenizer
    special_ids = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}
    chat_template = TULU_CHAT_TEMPLATE if config.data.chat_template == "tulu" else None
    return export_hf(output_dir / EXPORT_DIR, state.params, model_config, config.data.tokenizer,
                     chat_template, special_ids, run_config)


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
            if config.training.eval_batches is not None and index >= config.training.eval_batches:
                break
            metrics = jax.device_get(eval_fn(params, make_global_batch(numpy_batch(batch), sharding)))
            loss_sum += float(metrics["loss_sum"])
            tokens += float(metrics["trained_tokens"])
        return {"loss": loss_sum / max(tokens, 1.0), "trained_tokens": tokens}

    return evaluate
