"""Parameter trees of the Llama module: random initialisation, logical axis names, scan/unrolled layouts."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from tulu_jax.models.config import LlamaConfig
from tulu_jax.models.llama import Llama

Params = dict[str, Any]


def _abstract_boxed(config: LlamaConfig):
    dummy = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: Llama(config).init(jax.random.PRNGKey(0), dummy)["params"])


def init_params(config: LlamaConfig, rng: jax.Array) -> Params:
    """Random parameters (normal, std 0.02; norms at 1) as a plain pytree of arrays."""
    dummy = jnp.zeros((1, 1), jnp.int32)
    # Jitted: one compiled program instead of hundreds of eager dispatches.
    return jax.jit(lambda key: nn.unbox(Llama(config).init(key, dummy)["params"]))(rng)


def param_logical_axes(config: LlamaConfig) -> Params:
    """A pytree like the params whose leaves are ``PartitionSpec``s of logical axis names."""
    return nn.get_partition_spec(_abstract_boxed(config))


def param_shapes(config: LlamaConfig) -> Params:
    """``jax.ShapeDtypeStruct`` leaves for every parameter, without allocating."""
    return nn.unbox(_abstract_boxed(config))


def stack_layers(per_layer: list[Params]) -> Params:
    """Turn a list of per-layer trees into one tree with a leading ``layers`` axis (the scan layout)."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *per_layer)


def unstack_layers(stacked: Params, num_layers: int) -> list[Params]:
    return [jax.tree.map(lambda leaf, i=i: leaf[i], stacked) for i in range(num_layers)]


def layers_as_list(params: Params, config: LlamaConfig) -> list[Params]:
    """The per-layer trees of ``params`` whatever the layout."""
    if config.scan_layers:
        return unstack_layers(params["layers"], config.num_layers)
    return [params[f"layers_{i}"] for i in range(config.num_layers)]


def with_layers(params: Params, per_layer: list[Params], config: LlamaConfig) -> Params:
    """``params`` with its layers replaced by ``per_layer``, in the layout the config asks for."""
    rest = {k: v for k, v in params.items() if k != "layers" and not k.startswith("layers_")}
    if config.scan_layers:
        return {**rest, "layers": stack_layers(per_layer)}
    return {**rest, **{f"layers_{i}": layer for i, layer in enumerate(per_layer)}}
