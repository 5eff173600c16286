"""The one ``run_*`` skeleton: output-dir guards, resume, logger, the loop with its hooks, keep-best, export."""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import jax

from data_pipeline.paths import as_path
from tulu_jax.checkpoint import Checkpointer
from tulu_jax.config import to_dict, to_yaml
from tulu_jax.models import LlamaConfig
from tulu_jax.stages.data_exchange import data_work_share
from tulu_jax.stages.resume import resume_state
from tulu_jax.stages.runner.keep_best import BEST_DIR, KeepBest
from tulu_jax.stages.runner.stage import Stage, StagePlan, StageResult
from tulu_jax.stages.same_run import start_stage
from tulu_jax.training.hooks import BatchRecord, Hook
from tulu_jax.training.loop import LoopSpec, run_training
from tulu_jax.training.metrics import MetricsLogger

log = logging.getLogger(__name__)


def run_stage(stage: Stage, resume: Optional[bool] = None, *, export: bool = True,
              hooks: Sequence[Hook] = ()) -> StageResult:
    """Train ``stage`` (or resume it), checkpoint, and (when ``export``) export; every process calls it.

    ``resume=None`` follows ``checkpoint.resume``; True insists on a checkpoint; False refuses to overwrite one.
    ``hooks`` run after the stage's own (a caller's extra logging, or a test's simulated failure).
    """
    config = stage.config
    start_stage(config)
    output_dir = as_path(config.output_dir)
    is_writer = jax.process_index() == 0
    if is_writer:
        output_dir.mkdir(parents=True, exist_ok=True)

    plan = stage.prepare(data_work_share(config.output_dir))
    run_config = run_config_dict(config, plan.model_config)
    if is_writer:
        (output_dir / "config.yaml").write_text(to_yaml(config))
    checkpointer = Checkpointer(output_dir / "checkpoints", config.checkpoint)
    restored = resume_state(checkpointer, config.checkpoint.resume, resume, plan.abstract_state, plan.batches,
                            run_config=run_config)
    state = stage.training_state(restored)
    del restored

    training = config.training
    logger = MetricsLogger(output_dir, tensorboard=training.tensorboard, wandb_project=training.wandb_project,
                           run_config=run_config)
    keep_best = _keep_best(plan, output_dir, run_config)
    record = (BatchRecord(output_dir / "batches.jsonl"),) if training.record_batches and logger.enabled else ()
    spec = LoopSpec(
        total_steps=plan.total_steps, logger=logger, log_every=training.log_every, checkpointer=checkpointer,
        save_every=config.checkpoint.save_every, run_config=run_config,
        hooks=(*_present(plan.evaluation, keep_best), *plan.hooks, *record, *hooks),
        progress_bar=training.progress_bar,
    )
    try:
        state = run_training(state, plan.step, plan.batches, spec)
    finally:
        logger.close()
        checkpointer.close()

    part = plan.export.part
    if keep_best is not None and keep_best.step is not None:
        log.info("exporting the best params on the held-out split: step %d (%s %.4f)", keep_best.step,
                 keep_best.metric, keep_best.score)
        abstract = _abstract(state.params[part] if part else state.params)
        del state  # the last state is not what is exported: freed before the best is read
        params = keep_best.restore(abstract)
        eval_metrics = {keep_best.metric: keep_best.score}
    else:
        params = state.params[part] if part else state.params
        eval_metrics = plan.evaluation.at(plan.total_steps, state.params) if plan.evaluation is not None else {}
    export_dir = plan.export.write(output_dir, params, run_config) if export else None
    return StageResult(export_dir, params, eval_metrics, dict(plan.details))


def run_config_dict(stage_config: Any, model_config: LlamaConfig) -> dict:
    """The resolved config saved with checkpoints and exports: the stage config plus the model it built."""
    return {**to_dict(stage_config), "resolved_model": to_dict(model_config)}


def _keep_best(plan: StagePlan, output_dir, run_config: dict) -> Optional[KeepBest]:
    if plan.keep_best is None or plan.evaluation is None:
        return None
    return KeepBest(plan.evaluation, plan.keep_best, output_dir / BEST_DIR, run_config, plan.export.part)


def _present(*hooks: Optional[Hook]) -> tuple[Hook, ...]:
    return tuple(hook for hook in hooks if hook is not None)


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), tree)
