"""Where the PPO value model starts, by the name ``value.init`` gives: a table like the objectives' registry.

An entry is ``function(config, model_config, policy_params, shardings) -> value params`` laid out by
``shardings``, and whether it reads ``value.path``. A new starting point is one entry here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from data_pipeline.paths import as_path
from tulu_jax.config import from_dict
from tulu_jax.errors import CheckpointError, ConfigError
from tulu_jax.models import LlamaConfig
from tulu_jax.models.value_head import init_scalar_head_params, scalar_head_params_from_lm
from tulu_jax.stages.reward_model import EXPORT_DIR as REWARD_MODEL_DIR
from tulu_jax.training.state import init_params_sharded



@dataclass(frozen=True)
class ValueInit:
    function: Callable[[Any, LlamaConfig, Any, Any], Any]
    needs_path: bool = False


def from_policy(config, model_config: LlamaConfig, policy_params: Any, shardings: Any) -> Any:
    """The policy's trunk with a zero score head."""
    return jax.jit(scalar_head_params_from_lm, out_shardings=shardings)(policy_params)


def from_scratch(config, model_config: LlamaConfig, policy_params: Any, shardings: Any) -> Any:
    """A random trunk (seeded ``seed + 1``) with a zero score head."""
    return init_params_sharded(lambda key: init_scalar_head_params(model_config, key), config.seed + 1, shardings)


def from_reward_model(config, model_config: LlamaConfig, policy_params: Any, shardings: Any) -> Any:
    """A trained reward model (the Tülu 3 choice): ``value.path`` is a ``tulu-jax rm`` run's output_dir."""
    return load_reward_model_sharded(config.value.path, model_config, shardings)


VALUE_INITS = {
    "reward_model": ValueInit(from_reward_model, needs_path=True),
    "policy": ValueInit(from_policy),
    "scratch": ValueInit(from_scratch),
}


def value_init_entry(name: str, what: str = "value.init") -> ValueInit:
    """The entry called ``name``; ConfigError listing the known ones otherwise."""
    if name not in VALUE_INITS:
        raise ConfigError(f"{what}: {name!r} is not allowed; choose one of {', '.join(map(repr, VALUE_INITS))}")
    return VALUE_INITS[name]


def load_reward_model_sharded(path: str, model_config: LlamaConfig, shardings: Any) -> dict:
    """A ``tulu-jax rm`` run's params (its ``reward_model/`` export), each process reading only its shards."""
    root = as_path(path)
    directory = root / REWARD_MODEL_DIR if (root / REWARD_MODEL_DIR / "model_config.json").is_file() else root
    if not (directory / "model_config.json").is_file() or not (directory / "params").is_dir():
        raise CheckpointError(
            f"value.path {path} holds no reward model (expected model_config.json and params/ in {directory}); "
            "give the output_dir of a `tulu-jax rm` run"
        )
    reward_config = from_dict(LlamaConfig, json.loads((directory / "model_config.json").read_text()),
                              where=str(directory / "model_config.json"))
    trunk_fields = ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads")
    mismatched = [name for name in trunk_fields if getattr(reward_config, name) != getattr(model_config, name)]
    if mismatched:
        raise ConfigError(
            f"value.path {path}: the reward model's {', '.join(mismatched)} differ from the policy's; "
            "the value model must have the policy's shape (train the reward model from the same base)"
        )
    shapes = jax.eval_shape(lambda: init_scalar_head_params(model_config, jax.random.PRNGKey(0)))
    target = jax.tree.map(lambda shape, where: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=where),
                          shapes, shardings)
    return ocp.StandardCheckpointer().restore(directory / "params", target)
