"""The optimizer of a batch stage (SFT, DPO, RM) and the shardings of its train state, from the param layout."""

from __future__ import annotations

from typing import Any

from tulu_jax.training.optimizer import make_optimizer, make_schedule
from tulu_jax.training.state import TrainState, state_shardings


def optimizer_and_shardings(config: Any, mesh, shapes: Any, axes: Any, total_steps: int) -> tuple[Any, Any, TrainState]:
    """``(schedule, optimizer, state shardings)``: ``config.schedule`` over ``total_steps`` of
    ``config.optimizer``, and every param and optimizer moment laid out by its logical ``axes``."""
    schedule = make_schedule(config.optimizer.learning_rate, config.schedule, total_steps)
    optimizer = make_optimizer(config.optimizer, schedule)
    return schedule, optimizer, state_shardings(mesh, optimizer, shapes, axes)
