"""The sections SFT, DPO and the reward model share; each stage's config adds its ``objective:`` and its defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from data_pipeline.config import DataConfig
from tulu_jax.checkpoint import CheckpointConfig
from tulu_jax.sharding import MeshConfig
from tulu_jax.stages.model_source import ModelConfig
from tulu_jax.training.config import EVALUATION_RENAMES, EvaluationConfig, TrainingConfig
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig


@dataclass(frozen=True)
class BatchStageConfig:
    """A stage trained on batches of prepared rows; ``training.batch_size`` counts rows (pairs for DPO and RM)."""

    RENAMED_KEYS: ClassVar[dict] = dict(EVALUATION_RENAMES)

    output_dir: str = "runs/stage"
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
