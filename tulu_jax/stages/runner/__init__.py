"""The stage runner: the one ``run_*`` skeleton (output-dir guards, resume, logger, loop, evaluation, keep-best,
export). A stage supplies a :class:`Stage` (its data, step, initial state, hooks and export); the runner
returns one :class:`StageResult` for every stage."""

from tulu_jax.stages.runner.export import Export, HuggingFaceExport
from tulu_jax.stages.runner.run import run_stage
from tulu_jax.stages.runner.stage import Stage, StagePlan, StageResult

__all__ = ["Export", "HuggingFaceExport", "Stage", "StagePlan", "StageResult", "run_stage"]
