"""Keep-best: the params that scored best on one evaluation metric, saved as a checkpoint step of their own.

Tülu 3 kept the RLVR checkpoint that scored best on the dev evaluations. The starting params are a candidate
too (evaluated before the first step); every new best is saved under ``output_dir/best/<step>`` (one kept),
its score beside it, and the runner exports the best instead of the last.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from tulu_jax import distributed
from tulu_jax.checkpoint import CheckpointConfig, Checkpointer
from tulu_jax.training.hooks import Evaluation, Hook

log = logging.getLogger(__name__)

BEST_DIR = "best"


class KeepBest(Hook):
    """Runs after ``evaluation`` at the same steps and keeps ``params[part]`` (all params when ``part`` is None)
    whenever ``metric`` beats the best so far; every process agrees on each decision."""

    def __init__(self, evaluation: Evaluation, metric: str, directory, run_config: dict, part: Optional[str]):
        self.evaluation, self.metric, self.run_config, self.part = evaluation, metric, run_config, part
        self.checkpointer = Checkpointer(directory, CheckpointConfig(keep=1, async_save=False))
        steps = self.checkpointer.steps()
        saved = self.checkpointer.saved_config(steps[-1]) if steps else None
        self.step: Optional[int] = steps[-1] if steps else None
        self.score = float(saved[self.score_key]) if saved else None

    @property
    def score_key(self) -> str:
        return f"dev_{self.metric}"

    @property
    def tree_key(self) -> str:
        return self.part or "params"

    def start(self, state: Any, step: int) -> dict:
        if self.step is not None:
            return {}
        logged = self.evaluation.run(step, state.params)  # the starting params are a candidate too
        log.info("dev %s of the starting params: %.4f", self.metric, self.evaluation.last[1][self.metric])
        self.after_step(step, state)
        return logged

    def due(self, step: int, total_steps: int) -> bool:
        return self.evaluation.due(step, total_steps)

    def after_step(self, step: int, state: Any) -> dict:
        score = self.evaluation.last[1][self.metric]
        better = self.score is None or score > self.score
        if distributed.agreed("keep best", "1" if better else "0", step=step) != "1":
            return {}
        kept = state.params[self.part] if self.part else state.params
        self.checkpointer.save(step, {self.tree_key: kept}, {}, {**self.run_config, self.score_key: score},
                               force=True)
        self.checkpointer.wait()
        self.step, self.score = step, score
        return {}

    def restore(self, abstract_params: Any) -> Any:
        """The kept params, laid out as ``abstract_params`` (sharded ShapeDtypeStructs)."""
        restored = self.checkpointer.restore(self.step, {self.tree_key: abstract_params})
        return restored.state[self.tree_key]
