"""Llama 3.1 in Flax: config and presets, the module, parameter initialisation and logical axes."""

from tulu_jax.models.config import PRESETS, LlamaConfig, RopeScaling, from_hf_dict, preset, to_hf_dict
from tulu_jax.models.llama import Llama, default_positions, init_cache, unembedding_matrix
from tulu_jax.models.params import init_params, param_logical_axes, stack_layers, unstack_layers

__all__ = [
    "PRESETS",
    "Llama",
    "LlamaConfig",
    "RopeScaling",
    "default_positions",
    "from_hf_dict",
    "init_cache",
    "init_params",
    "param_logical_axes",
    "preset",
    "stack_layers",
    "to_hf_dict",
    "unembedding_matrix",
    "unstack_layers",
]
