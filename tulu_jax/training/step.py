"""The generic train step: ``state, batch -> state, metrics``, with gradient accumulation inside one jit.

A stage supplies a ``loss_fn(params, micro_batch, context) -> (loss, metrics)`` whose losses ADD UP over
micro-batches to the global-batch loss (the SFT ``sum`` reduction does so by itself; a mean divides by a
global count that ``batch_context_fn`` computes from the whole batch before the micro-batch scan). Every
metric the loss returns must be additive too (sums and counts); ratios are formed on the host.

Micro-batch ``i`` takes rows ``i, i+n, i+2n, ...`` of the global batch: with the batch split over devices
in contiguous blocks, every device keeps its own rows in every micro-batch, so splitting moves no data.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from tulu_jax.errors import ConfigError
from tulu_jax.sharding import activate, batch_sharding, mesh_spec, replicated
from tulu_jax.training.state import TrainState

LossFn = Callable[[Any, Mapping[str, jax.Array], Mapping[str, jax.Array]], tuple[jax.Array, dict]]
ContextFn = Callable[[Mapping[str, jax.Array]], dict]


def split_micro_batches(batch: Mapping[str, jax.Array], num_micro_batches: int, mesh: Optional[Mesh]) -> dict:
    """``[batch, ...]`` arrays to ``[micro, batch/micro, ...]``, micro-batch i holding rows i, i+n, ..."""

    def split(array):
        rows = array.shape[0]
        if rows % num_micro_batches:
            raise ConfigError(
                f"the batch of {rows} rows does not split into {num_micro_batches} micro-batches; "
                "make training.batch_size a multiple of training.micro_batches"
            )
        stacked = array.reshape(rows // num_micro_batches, num_micro_batches, *array.shape[1:]).swapaxes(0, 1)
        if mesh is not None:
            spec = mesh_spec((None, "batch", *([None] * (array.ndim - 1))))
            stacked = jax.lax.with_sharding_constraint(stacked, NamedSharding(mesh, spec))
        return stacked

    return {key: split(value) for key, value in batch.items()}


def build_train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    num_micro_batches: int = 1,
    batch_context_fn: Optional[ContextFn] = None,
    mesh: Optional[Mesh] = None,
) -> Callable[[TrainState, Mapping[str, jax.Array]], tuple[TrainState, dict]]:
    """The pure (unjitted) step: accumulate gradients over micro-batches with ``lax.scan``, then one update.

    Metrics: the loss_fn's metrics summed over micro-batches, plus ``loss``, ``grad_norm`` (before clipping)
    and ``learning_rate`` (the one this update used).
    """

    def step(state: TrainState, batch: Mapping[str, jax.Array]) -> tuple[TrainState, dict]:
        step_rng, next_rng = jax.random.split(jax.random.wrap_key_data(state.rng))
        context = dict(batch_context_fn(batch)) if batch_context_fn else {}
        micro_batches = split_micro_batches(batch, num_micro_batches, mesh)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def accumulate(carry, inputs):
            grads_sum, loss_sum = carry
            index, micro_batch = inputs
            micro_context = {**context, "rng": jax.random.fold_in(step_rng, index)}
            (loss, metrics), grads = grad_fn(state.params, micro_batch, micro_context)
            grads_sum = jax.tree.map(lambda total, g: total + g.astype(total.dtype), grads_sum, grads)
            return (grads_sum, loss_sum + loss), metrics

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.promote_types(p.dtype, jnp.float32)), state.params)
        indices = jnp.arange(num_micro_batches)
        (grads, loss), per_micro = jax.lax.scan(accumulate, (zeros, jnp.float32(0.0)), (indices, micro_batches))
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {key: jnp.sum(value, axis=0) for key, value in per_micro.items()}
        metrics.update(loss=loss, grad_norm=optax.global_norm(grads), learning_rate=schedule(state.step))
        new_state = TrainState(
            step=state.step + 1, params=params, opt_state=opt_state, rng=jax.random.key_data(next_rng)
        )
        return new_state, metrics

    return step


def build_eval_step(loss_fn: LossFn, batch_context_fn: Optional[ContextFn] = None) -> Callable:
    """``params, batch -> metrics`` (the loss_fn's metrics and ``loss``) with no gradient."""

    def evaluate(params, batch):
        context = dict(batch_context_fn(batch)) if batch_context_fn else {}
        context["rng"] = jax.random.PRNGKey(0)
        loss, metrics = loss_fn(params, batch, context)
        return {**metrics, "loss": loss}

    return evaluate


class MeshFunction:
    """A jitted function traced and run under a mesh and the logical-axis rules.

    ``jax.set_mesh`` cannot be entered inside ``jit``, so the mesh is activated around each call; the
    function is still compiled once per input signature (``compile_count`` says how many times).
    """

    def __init__(self, jitted, mesh: Mesh):
        self.jitted, self.mesh = jitted, mesh

    def __call__(self, *args):
        with activate(self.mesh):
            return self.jitted(*args)

    @property
    def compile_count(self) -> int:
        return self.jitted._cache_size()


def jit_train_step(step_fn, mesh: Mesh, shardings: TrainState, batch_keys: tuple[str, ...]) -> MeshFunction:
    """Jit the step with explicit state/batch shardings, replicated metrics and the state donated."""
    batch_shardings = {key: batch_sharding(mesh) for key in batch_keys}
    jitted = jax.jit(
        step_fn,
        in_shardings=(shardings, batch_shardings),
        out_shardings=(shardings, replicated(mesh)),
        donate_argnums=(0,),
    )
    return MeshFunction(jitted, mesh)


def jit_eval_step(eval_fn, mesh: Mesh, param_shardings: Any, batch_keys: tuple[str, ...]) -> MeshFunction:
    batch_shardings = {key: batch_sharding(mesh) for key in batch_keys}
    jitted = jax.jit(eval_fn, in_shardings=(param_shardings, batch_shardings), out_shardings=replicated(mesh))
    return MeshFunction(jitted, mesh)
