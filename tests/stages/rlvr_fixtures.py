"""Shared builders for the RLVR stage tests: the toy verifiable task on a tiny model."""

from __future__ import annotations

import jax

from tests.stages.rlvr_toy_task import TOY_MODEL_OVERRIDES, ToyTokenizer
from tulu_jax.config import from_dict
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.stages.model_source import resolve_model_config
from tulu_jax.stages.rlvr import RLVR, RLVRConfig


def toy_config(algorithm: str = "ppo", **sections) -> RLVRConfig:
    raw = {
        "model": {"source": "tiny", "overrides": dict(TOY_MODEL_OVERRIDES)},
        "value": {"init": "policy"},
        "data": {"max_prompt_len": 12},
        "rollout": {"prompts_per_step": 32, "max_new_tokens": 2},
        "optimizer": {"learning_rate": 1e-2, "eps": 1e-5},  # 2e-2 learned, then drifted off the answer on some CPUs
        "schedule": {"kind": "constant", "warmup_ratio": 0.0},
        "ppo": {"logprob_chunk": 8},
        "checkpoint": {"async_save": False, "save_every": 1},
        "training": {"steps": 40, "tensorboard": False, "progress_bar": False},
        "seed": 0,
    }
    if algorithm == "grpo":
        raw["rollout"] = {"prompts_per_step": 8, "samples_per_prompt": 4, "max_new_tokens": 2}
        raw["objective"] = {"advantage_estimator": "grpo", "policy_loss": "grpo", "group_size": 4, "kl_beta": 0.01}
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return from_dict(RLVRConfig, raw)


def toy_stage(config: RLVRConfig, devices: int = 1) -> RLVR:
    """The stage's programs on ``devices`` CPU devices (fsdp), the policy a seeded random toy model."""
    mesh = make_mesh(MeshConfig(data=1, fsdp=devices, tensor=1), jax.devices()[:devices])
    return RLVR(config, resolve_model_config(config.model), ToyTokenizer(), mesh)
