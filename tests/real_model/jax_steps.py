"""tulu-jax's own training step on one device, built the way the SFT and DPO stages build it."""

from __future__ import annotations

import jax

from tulu_jax.models import param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule
from tulu_jax.training.state import create_train_state, state_shardings
from tulu_jax.stages.preference_training import jit_pair_step
from tulu_jax.training.step import build_train_step


def run_steps(config, params, loss_fn, batches, batch_keys, *, peak_lr, warmup, max_grad_norm,
              context_fn=None) -> list[dict]:
    """Train ``params`` on ``batches`` with AdamW (linear warmup and decay, clipping); per-step metrics as floats."""
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    schedule = make_schedule(peak_lr, ScheduleConfig(kind="linear", warmup_steps=warmup), len(batches))
    optimizer = make_optimizer(OptimizerConfig(learning_rate=peak_lr, max_grad_norm=max_grad_norm), schedule)
    shardings = state_shardings(mesh, optimizer, param_shapes(config), param_logical_axes(config))
    ranks = {key: batches[0][key].ndim for key in batch_keys}
    step = jit_pair_step(build_train_step(loss_fn, optimizer, schedule, 1, context_fn, mesh), mesh, shardings, ranks)
    state = create_train_state(params, optimizer, 0, shardings)
    history = []
    for batch in batches:
        state, metrics = step(state, {key: batch[key] for key in batch_keys})
        history.append({key: float(value) for key, value in jax.device_get(metrics).items()})
    return history
