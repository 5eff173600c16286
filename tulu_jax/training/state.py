"""The train state every stage shares: ``TrainState(step, params, opt_state, rng)``, and its shardings.

The optimizer state takes its shardings from the params: the moments of a parameter are laid out like the
parameter itself (``optax.tree_map_params`` finds them in the abstract optimizer state from
``jax.eval_shape``), and everything else in the optimizer state (counts, scalars) is replicated. So an
FSDP mesh splits Adam's moments exactly as it splits the weights and no device ever holds a full copy.

Mixed precision: parameters are stored in ``model.param_dtype`` (float32 master weights by default) and the
model casts them to ``model.compute_dtype`` (bfloat16 on TPU) inside each layer, so updates are applied to
float32 weights while matmuls run in bfloat16.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, PartitionSpec

from tulu_jax.sharding import replicated, tree_shardings


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any
    opt_state: Any
    rng: jax.Array  # a raw uint32[2] PRNG key, advanced once per step


def opt_state_logical_axes(optimizer: optax.GradientTransformation, param_shapes: Any, param_axes: Any) -> Any:
    """Logical ``PartitionSpec``s for the optimizer state: param-shaped leaves like their param, others replicated."""
    abstract_state = jax.eval_shape(optimizer.init, param_shapes)
    return optax.tree_map_params(
        optimizer,
        lambda _leaf, axes: axes,
        abstract_state,
        param_axes,
        transform_non_params=lambda _leaf: PartitionSpec(),
        is_leaf=lambda leaf: isinstance(leaf, PartitionSpec),
    )


def state_shardings(mesh: Mesh, optimizer: optax.GradientTransformation, param_shapes: Any, param_axes: Any) -> TrainState:
    """A ``TrainState`` of ``NamedSharding``s for this mesh."""
    params = tree_shardings(mesh, param_axes, param_shapes)
    abstract_opt_state = jax.eval_shape(optimizer.init, param_shapes)
    opt_axes = opt_state_logical_axes(optimizer, param_shapes, param_axes)
    opt_state = tree_shardings(mesh, opt_axes, abstract_opt_state)
    return TrainState(step=replicated(mesh), params=params, opt_state=opt_state, rng=replicated(mesh))


def abstract_state(optimizer: optax.GradientTransformation, param_shapes: Any, shardings: TrainState | None = None) -> TrainState:
    """``ShapeDtypeStruct``s of the state (with shardings when given): what checkpoint restore targets."""
    state = jax.eval_shape(
        lambda params: TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
            rng=jax.random.key_data(jax.random.PRNGKey(0)),
        ),
        param_shapes,
    )
    if shardings is None:
        return state
    return jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), state, shardings)


def create_train_state(
    params: Any,
    optimizer: optax.GradientTransformation,
    seed: int,
    shardings: TrainState,
) -> TrainState:
    """Place ``params`` (numpy or jax arrays) on the mesh and build the optimizer state there, already sharded."""
    params = jax.device_put(params, shardings.params)

    def build(params):
        return TrainState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
            rng=jax.random.key_data(jax.random.PRNGKey(seed)),
        )

    return jax.jit(build, in_shardings=(shardings.params,), out_shardings=shardings)(params)


def init_params_sharded(init_fn: Callable[[jax.Array], Any], seed: int, param_shardings: Any) -> Any:
    """Random params created directly in their shards (a 70B model never exists on one device)."""
    return jax.jit(init_fn, out_shardings=param_shardings)(jax.random.PRNGKey(seed))

