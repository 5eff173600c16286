"""The SFT train step for planning, assembled from the SFT stage's loss and the shared step builder.

``sft_plan_step`` is the single place the planner gets its step from. It repeats the few lines of
``stages.sft.run_sft`` that build the jitted step; once the stage exposes a step builder taking
(config, mesh), this function should just call it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tulu_jax.models import param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.planning.target import PlanTarget
from tulu_jax.training.optimizer import make_optimizer, make_schedule
from tulu_jax.training.state import abstract_state, state_shardings
from tulu_jax.training.step import build_train_step, jit_train_step

# The schedule's length changes no shape and no compiled operation; any positive count will do.
PLANNED_TOTAL_STEPS = 1000


def sft_plan_step(target: PlanTarget, mesh: Mesh) -> tuple[Any, tuple[Any, ...]]:
    """The jitted SFT step (a ``MeshFunction``) and abstract, sharded ``(state, batch)`` to lower it with."""
    from tulu_jax.stages.sft import BATCH_KEYS, global_token_count, make_sft_loss

    config = target.stage_config
    schedule = make_schedule(config.optimizer.learning_rate, config.schedule, PLANNED_TOTAL_STEPS)
    optimizer = make_optimizer(config.optimizer, schedule)
    shapes, axes = param_shapes(target.model), param_logical_axes(target.model)
    shardings = state_shardings(mesh, optimizer, shapes, axes)
    state = abstract_state(optimizer, shapes, shardings)
    loss_fn = make_sft_loss(target.model, config.loss)
    step = build_train_step(loss_fn, optimizer, schedule, config.training.micro_batches, global_token_count, mesh)
    jitted = jit_train_step(step, mesh, shardings, BATCH_KEYS)
    batch_sharding = NamedSharding(mesh, PartitionSpec(("data", "fsdp"), None))
    batch = {
        key: jax.ShapeDtypeStruct((target.batch_size, target.max_length), jnp.int32, sharding=batch_sharding)
        for key in BATCH_KEYS
    }
    return jitted, (state, batch)
