"""Reward model: Llama with a scalar head trained with Bradley–Terry on preference pairs (RECIPE.md section 6).

Read top to bottom: config → preference rows → scalar-head model from a language model (its lm_head
dropped, score head zero) → BT loss on the score at each side's last real token, both sides in one
forward → jitted step → the stage on the runner → export of the scalar-head params.

The export (``<output_dir>/reward_model/``) is what the PPO value model starts from:
``load_reward_model(output_dir)`` returns ``(LlamaConfig, params)`` in the ``LlamaScalarHead`` layout.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from data_pipeline.config import DataConfig
from data_pipeline.paths import as_path
from data_pipeline.work_share import WorkShare
from tulu_jax.config import from_dict, to_dict
from tulu_jax.errors import CheckpointError
from tulu_jax.models import LlamaConfig, param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.models.value_head import (
    LlamaScalarHead, init_scalar_head_params, scalar_head_logical_axes, scalar_head_params_from_lm,
)
from tulu_jax.objectives import bradley_terry_loss, scores_at_last_token
from tulu_jax.sharding import tree_shardings
from tulu_jax.stages import preference_training as pt
from tulu_jax.stages.model_source import ModelConfig, load_model_params, resolve_model_config
from tulu_jax.stages.preference_batches import PAIR_KEYS, both_sides
from tulu_jax.stages.optimizer_setup import optimizer_and_shardings
from tulu_jax.stages.runner import Stage, StagePlan, StageResult, run_stage
from tulu_jax.stages.stage_config import BatchStageConfig
from tulu_jax.training.loop import DeviceStep
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig
from tulu_jax.training.state import TrainState, abstract_state, create_train_state
from tulu_jax.training.step import MeshFunction, build_eval_step, build_train_step

log = logging.getLogger(__name__)

EXPORT_DIR = "reward_model"
BATCH_RANKS = {key: 2 for key in PAIR_KEYS}


@dataclass(frozen=True)
class RewardModelConfig(BatchStageConfig):
    output_dir: str = "runs/rm"
    data: DataConfig = field(default_factory=lambda: DataConfig(kind="preference", packing="padded", max_seq_len=2048))
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(learning_rate=3e-6))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(kind="linear", warmup_ratio=0.0))


def pair_scores(model_config: LlamaConfig, params: Any, batch) -> tuple[jax.Array, jax.Array]:
    """Scores of the chosen and rejected sides, ``[pairs]`` each, at each sequence's last real token."""
    tokens = both_sides(batch)
    per_token = LlamaScalarHead(model_config).apply(
        {"params": params}, tokens["input_ids"], positions=tokens["positions"], segment_ids=tokens["segment_ids"]
    )  # [2·pairs, length]
    scores = scores_at_last_token(per_token, tokens["segment_ids"])
    pairs = batch["chosen_input_ids"].shape[0]
    return scores[:pairs], scores[pairs:]


def make_reward_model_loss(model_config: LlamaConfig) -> Callable:
    """``loss_fn(params, micro_batch, context)``: Bradley–Terry on one forward of both sides."""

    def loss_fn(params, batch, context):
        chosen, rejected = pair_scores(model_config, params, batch)
        loss, metrics = bradley_terry_loss(chosen, rejected)
        return pt.additive_pair_metrics(loss, metrics, chosen.shape[0], context["global_pairs"])

    return loss_fn


def initial_scalar_head_params(model: ModelConfig, model_config: LlamaConfig, seed: int, mesh) -> Any:
    """Trunk from the language model at ``model.source`` (lm_head dropped, read sharded); a zero score head."""
    lm_shardings = tree_shardings(mesh, param_logical_axes(model_config), param_shapes(model_config))
    return scalar_head_params_from_lm(load_model_params(model, model_config, seed, lm_shardings))


# The schedule's length changes no shape and no compiled operation: what a plan compiles with.
PLANNED_TOTAL_STEPS = 1000


@dataclass(frozen=True)
class RewardModelStep:
    """The jitted reward-model step (both sides in one forward); ``abstract_inputs()`` lowers it without data."""

    step: MeshFunction  # (state, pair batch) -> (state, metrics), the state donated
    loss_fn: Callable
    optimizer: Any
    schedule: Any
    shardings: Any  # TrainState of NamedShardings
    param_shapes: Any  # the scalar-head layout {"model": trunk, "score": ...}
    batch_shape: tuple[int, int]  # [pairs, max_seq_len] of every pair array

    def abstract_state(self):
        return abstract_state(self.optimizer, self.param_shapes, self.shardings)

    def abstract_inputs(self) -> tuple:
        shardings = pt.batch_shardings(self.step.mesh, BATCH_RANKS)
        batch = {key: jax.ShapeDtypeStruct(self.batch_shape, jnp.int32, sharding=shardings[key]) for key in BATCH_RANKS}
        return self.abstract_state(), batch


def build_reward_model_step(config: RewardModelConfig, mesh, model_config: Optional[LlamaConfig] = None,
                            total_steps: int = PLANNED_TOTAL_STEPS) -> RewardModelStep:
    """The reward-model step for ``mesh``: what ``run_reward_model`` trains with and ``tulu-jax plan`` compiles.
    ``model_config`` defaults to the config's model resolved without a tokenizer."""
    model_config = model_config or resolve_model_config(config.model)
    shapes = jax.eval_shape(lambda: init_scalar_head_params(model_config, jax.random.PRNGKey(0)))
    schedule, optimizer, shardings = optimizer_and_shardings(config, mesh, shapes,
                                                             scalar_head_logical_axes(model_config), total_steps)
    loss_fn = make_reward_model_loss(model_config)
    step = pt.jit_pair_step(
        build_train_step(loss_fn, optimizer, schedule, config.training.micro_batches, pt.global_pairs_context, mesh),
        mesh, shardings, BATCH_RANKS,
    )
    return RewardModelStep(step, loss_fn, optimizer, schedule, shardings, shapes,
                           (config.training.batch_size, config.data.max_seq_len))


@dataclass(frozen=True)
class RewardModelExport:
    """``<output_dir>/reward_model``: the scalar-head params (Orbax) and ``model_config.json``."""

    model_config: LlamaConfig
    part = None

    def write(self, output_dir, params: Any, run_config: dict) -> Path:
        return save_reward_model(as_path(output_dir) / EXPORT_DIR, params, self.model_config)


class RewardModelStage(Stage):
    """The reward model on the runner: preference pairs, the BT step, held-out pair accuracy, its own export."""

    def prepare(self, share: WorkShare) -> StagePlan:
        config = self.config
        rows = pt.prepare_pairs(config, share)
        # Optimizer, shardings and the jitted step: the builder the planner compiles too.
        self.built = build_reward_model_step(config, rows.mesh, rows.model_config, rows.total_steps)
        self.rows = rows
        to_device = pt.to_device_fn(rows.mesh, PAIR_KEYS)
        eval_step = pt.jit_pair_eval(build_eval_step(self.built.loss_fn, pt.global_pairs_context), rows.mesh,
                                     self.built.shardings.params, BATCH_RANKS)
        return StagePlan(
            model_config=rows.model_config, batches=pt.PairBatches(rows.loader, PAIR_KEYS),
            total_steps=rows.total_steps,
            abstract_state=self.built.abstract_state(), step=DeviceStep(self.built.step, to_device, pt.pair_means),
            export=RewardModelExport(rows.model_config),
            evaluation=pt.pair_evaluation(eval_step, rows.eval_rows, PAIR_KEYS, rows.micro_batch, to_device, config),
            hooks=(pt.pair_throughput(config),),
        )

    def initial_state(self) -> TrainState:
        config, built = self.config, self.built
        params = initial_scalar_head_params(config.model, self.rows.model_config, config.seed, self.rows.mesh)
        return create_train_state(params, built.optimizer, config.seed, built.shardings)


def run_reward_model(config: RewardModelConfig, resume: Optional[bool] = None, export: bool = True) -> StageResult:
    """Train the reward model, checkpoint, and (when ``export``) write ``<output_dir>/reward_model``."""
    return run_stage(RewardModelStage(config), resume, export=export)


def save_reward_model(directory: Path, params: Any, model_config: LlamaConfig) -> Path:
    """Write the scalar-head params (Orbax) and ``model_config.json`` into ``directory``."""
    directory = as_path(directory)
    checkpointer = ocp.StandardCheckpointer()  # every process writes the shards it holds
    checkpointer.save(directory / "params", params, force=True)
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        (directory / "model_config.json").write_text(json.dumps(to_dict(model_config), indent=2) + "\n")
    return directory


def load_reward_model(path: str | Path) -> tuple[LlamaConfig, Any]:
    """``(LlamaConfig, params)`` of a trained reward model, ready for ``LlamaScalarHead(config).apply``
    (``{"model": trunk, "score": ...}``): what the PPO value model is initialised from.

    ``path`` is the reward-model run's output_dir or its ``reward_model/`` export directory.
    """
    path = as_path(path)
    directory = path / EXPORT_DIR if (path / EXPORT_DIR / "model_config.json").is_file() else path
    config_file = directory / "model_config.json"
    if not config_file.is_file() or not (directory / "params").is_dir():
        raise CheckpointError(
            f"{path} holds no reward model (expected model_config.json and params/ in {directory}); "
            "give the output_dir of a `tulu-jax rm` run"
        )
    model_config = from_dict(LlamaConfig, json.loads(config_file.read_text()), where=str(config_file))
    shapes = jax.eval_shape(lambda: init_scalar_head_params(model_config, jax.random.PRNGKey(0)))
    params = ocp.StandardCheckpointer().restore(directory / "params", jax.device_get(jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), shapes)))
    return model_config, params
