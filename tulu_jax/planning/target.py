"""What the planner compiles: a stage config file read with the stage's own config class.

The planner reads the same YAML the stage trains from, so ``tulu-jax plan --config X`` and
``tulu-jax sft --config X`` agree on the model, mesh, batch and loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from tulu_jax.config import load_config
from tulu_jax.errors import ConfigError
from tulu_jax.models.config import LlamaConfig
from tulu_jax.sharding import MeshConfig

PLANNABLE_STAGES = ("sft",)


@dataclass(frozen=True)
class PlanTarget:
    """One train step to compile: ``batch_size`` sequences of ``max_length`` tokens per optimizer step."""

    stage: str
    stage_config: Any  # the stage's own frozen config (e.g. SFTConfig)
    model: LlamaConfig  # resolved from stage_config.model without reading weights
    source: str = "config"

    @property
    def mesh(self) -> MeshConfig:
        return self.stage_config.mesh

    @property
    def batch_size(self) -> int:
        return self.stage_config.training.batch_size

    @property
    def micro_batches(self) -> int:
        return self.stage_config.training.micro_batches

    @property
    def max_length(self) -> int:
        return self.stage_config.data.max_seq_len

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.max_length


def infer_stage(path: Path) -> str:
    """The stage a config file is for, from its name (``tulu3_8b_dpo.yaml`` → dpo); sft otherwise."""
    name = path.stem.lower()
    for stage in ("dpo", "rlvr", "ppo", "rm", "sft"):
        if name.endswith(f"_{stage}") or f"_{stage}_" in name or name == stage:
            return stage
    return "sft"


def load_plan_target(path: str | Path, overrides: Sequence[str] = (), stage: Optional[str] = None) -> PlanTarget:
    """Read a stage config (YAML, with ``a.b=value`` overrides) into a ``PlanTarget``."""
    path = Path(path)
    stage = stage or infer_stage(path)
    if stage not in PLANNABLE_STAGES:
        raise ConfigError(
            f"{path}: stage {stage!r} has no plannable train step yet (plannable: {', '.join(PLANNABLE_STAGES)}); "
            "pass --stage to override the stage guessed from the file name"
        )
    from tulu_jax.stages.common import resolve_model_config
    from tulu_jax.stages.sft import SFTConfig

    config = load_config(SFTConfig, path, overrides)
    return PlanTarget(stage=stage, stage_config=config, model=resolve_model_config(config.model), source=str(path))
