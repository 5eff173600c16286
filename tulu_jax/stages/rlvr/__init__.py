"""Stage 3 of Tülu 3, RLVR (RECIPE.md section 7): ``config`` (what a run is), ``rollout`` (sampling on the
global mesh, per-process scoring, the one ``RolloutBatch``), ``learner`` (log-probs, values, advantages, the
PPO epochs) and ``stage`` (the step on the shared loop, resume, keep-best, export)."""

from tulu_jax.stages.rlvr.config import RLVRConfig
from tulu_jax.stages.rlvr.stage import RLVR, RLVRData, RLVRStage, run_rlvr

__all__ = ["RLVR", "RLVRConfig", "RLVRData", "RLVRStage", "run_rlvr"]
