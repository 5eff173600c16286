"""What a stage supplies to the runner, and the one result every stage returns."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from etils import epath

from data_pipeline.work_share import WorkShare
from tulu_jax.models import LlamaConfig
from tulu_jax.stages.runner.export import Export
from tulu_jax.training.hooks import Evaluation, Hook
from tulu_jax.training.loop import TrainStep


@dataclass(frozen=True)
class StagePlan:
    """A stage once its data is prepared and its programs are built, before any weights are read."""

    model_config: LlamaConfig  # the model trained: saved with checkpoints and exports
    batches: Any  # the iterator of host batches, checkpointable (get_state / set_state)
    total_steps: int
    abstract_state: Any  # the TrainState of sharded ShapeDtypeStructs a checkpoint is restored into
    step: TrainStep
    export: Export
    evaluation: Optional[Evaluation] = None  # on the held-out split; None without one
    keep_best: Optional[str] = None  # an evaluation metric: the params that scored best on it are exported
    hooks: tuple[Hook, ...] = ()  # the stage's other hooks (throughput ...)
    details: Mapping[str, Any] = field(default_factory=dict)  # what the result reports besides


class Stage(abc.ABC):
    """One recipe step. ``config`` has ``output_dir``, ``seed``, ``checkpoint`` and ``training`` (``log_every``,
    ``tensorboard``, ``wandb_project``, ``progress_bar``, ``record_batches``); the runner reads nothing else."""

    def __init__(self, config: Any):
        self.config = config

    @abc.abstractmethod
    def prepare(self, share: WorkShare) -> StagePlan:
        """Data, model config, mesh and the built step; ``share`` divides tokenization among the processes."""

    @abc.abstractmethod
    def initial_state(self) -> Any:
        """A fresh TrainState (weights read sharded); called only when no checkpoint is resumed."""

    def training_state(self, restored: Optional[Any]) -> Any:
        """The state training starts from: ``restored`` when a checkpoint was resumed, a fresh one otherwise.
        A stage that read weights in ``prepare`` frees them here when they are not needed."""
        return restored if restored is not None else self.initial_state()


@dataclass(frozen=True)
class StageResult:
    export_dir: Optional[epath.Path]  # None when the run was asked not to export
    params: Any  # the params exported (or that would be): the best ones under keep-best
    eval_metrics: dict  # held-out metrics of those params at the end ({} without an evaluation split)
    details: dict  # what the stage reports besides (DPO: reference_cache_hit, reference_batches_computed)
