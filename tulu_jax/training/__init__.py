"""What every stage trains with: the train state, AdamW and its schedule, the generic step, the one loop."""

from tulu_jax.training.config import TrainingConfig
from tulu_jax.training.loop import LoopSpec, TrainingDivergedError, run_training
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule
from tulu_jax.training.state import TrainState, abstract_state, create_train_state, state_shardings
from tulu_jax.training.step import build_eval_step, build_train_step, jit_eval_step, jit_train_step

__all__ = [
    "LoopSpec",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainState",
    "TrainingConfig",
    "TrainingDivergedError",
    "abstract_state",
    "build_eval_step",
    "build_train_step",
    "create_train_state",
    "jit_eval_step",
    "jit_train_step",
    "make_optimizer",
    "make_schedule",
    "run_training",
    "state_shardings",
]
