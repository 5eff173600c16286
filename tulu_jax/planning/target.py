"""What the planner compiles: a stage config file read with the stage's own config class.

The planner reads the same YAML the stage trains from, so ``tulu-jax plan --config X`` and
``tulu-jax sft --config X`` agree on the model, mesh, batch and loss.

A later stage starts from an earlier stage's output (``model.source: runs/tulu3_8b_sft``), which does not
exist before that stage has run. The planner then follows the chain: the config beside this one whose
``output_dir`` is that source says which model the earlier stage trains (``--model PRESET`` overrides it).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from tulu_jax.config import load_config
from tulu_jax.errors import ConfigError
from tulu_jax.models.config import PRESETS, LlamaConfig, preset
from tulu_jax.sharding import MeshConfig

# stage name -> (module, config class): what each plannable stage reads its YAML into.
STAGE_CONFIGS = {
    "sft": ("tulu_jax.stages.sft", "SFTConfig"),
    "dpo": ("tulu_jax.stages.dpo", "DPOConfig"),
    "rm": ("tulu_jax.stages.reward_model", "RewardModelConfig"),
    "rlvr": ("tulu_jax.stages.rlvr.config", "RLVRConfig"),
}
PLANNABLE_STAGES = tuple(STAGE_CONFIGS)
ALIASES = {"reward_model": "rm", "ppo": "rlvr", "grpo": "rlvr"}


@dataclass(frozen=True)
class PlanTarget:
    """One stage config to plan: its own frozen config and the model it trains, resolved without weights."""

    stage: str
    stage_config: Any  # the stage's own frozen config (SFTConfig, DPOConfig, RewardModelConfig, RLVRConfig)
    model: LlamaConfig
    source: str = "config"
    model_origin: str = ""  # how the model's shape was found, when not from model.source itself

    @property
    def mesh(self) -> MeshConfig:
        return self.stage_config.mesh


def infer_stage(path: Path) -> str:
    """The stage a config file is for, from its name (``tulu3_8b_dpo.yaml`` → dpo); sft otherwise."""
    name = path.stem.lower()
    for stage in ("dpo", "rlvr", "grpo", "ppo", "rm", "sft"):
        if name.endswith(f"_{stage}") or f"_{stage}_" in name or name == stage:
            return ALIASES.get(stage, stage)
    return "sft"


def load_plan_target(
    path: str | Path, overrides: Sequence[str] = (), stage: Optional[str] = None, model: Optional[str] = None
) -> PlanTarget:
    """Read a stage config (YAML, with ``a.b=value`` overrides) into a ``PlanTarget``.

    ``model``: a preset whose shapes to plan with when the config's model source is not on this machine.
    """
    path = Path(path)
    stage = ALIASES.get(stage, stage) if stage else infer_stage(path)
    if stage not in STAGE_CONFIGS:
        raise ConfigError(
            f"unknown stage {stage!r}; plannable stages: {', '.join(PLANNABLE_STAGES)} (--stage, or the config "
            "file's name: *_sft.yaml, *_dpo.yaml, *_rm.yaml, *_rlvr.yaml)"
        )
    module, name = STAGE_CONFIGS[stage]
    config = load_config(getattr(importlib.import_module(module), name), path, overrides)
    if model is not None and model not in PRESETS:
        raise ConfigError(f"--model {model!r} is not a preset; choose one of {', '.join(PRESETS)}")
    model_config, origin = _planned_model(stage, config, path, model)
    return PlanTarget(stage, config, model_config, str(path), origin)


def _planned_model(stage: str, config: Any, path: Path, forced: Optional[str]) -> tuple[LlamaConfig, str]:
    source, overrides = config.model.source, dict(config.model.overrides)
    if forced is not None:
        return _with_policy(preset(forced), overrides), f"--model {forced}"
    found = _local_model(source, overrides)
    if found is not None:
        return found, ""
    shape, origin = _model_of_producer(source, path.parent, seen=(path.resolve(),))
    return _with_policy(shape, overrides), origin


def _local_model(source: str, overrides: dict) -> Optional[LlamaConfig]:
    """The model at ``source`` when it is a preset or a checkpoint on this machine; None when it is neither."""
    from tulu_jax.stages.model_source import ModelConfig, resolve_model_config

    if source in PRESETS:
        return resolve_model_config(ModelConfig(source=source, overrides=overrides))
    try:
        return resolve_model_config(ModelConfig(source=source, overrides=_policy_only(overrides)))
    except ConfigError:
        return None


def _model_of_producer(source: str, folder: Path, seen: tuple[Path, ...]) -> tuple[LlamaConfig, str]:
    """The model the config in ``folder`` whose output_dir is ``source`` trains (following its own source)."""
    wanted = {source.rstrip("/"), source.rstrip("/").removesuffix("/hf"), source.rstrip("/").removesuffix("/hf/")}
    for candidate in sorted(folder.glob("*.yaml")):
        if candidate.resolve() in seen:
            continue
        try:
            raw = yaml.safe_load(candidate.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(raw, dict) or str(raw.get("output_dir", "")).rstrip("/") not in wanted:
            continue
        model = raw.get("model") or {}
        their_source, their_overrides = model.get("source", ""), model.get("overrides") or {}
        found = _local_model(their_source, their_overrides)
        if found is None:
            found, origin = _model_of_producer(their_source, folder, seen + (candidate.resolve(),))
            return found, f"{candidate.name} ({origin})"
        return found, f"{candidate.name} ({their_source})"
    raise ConfigError(
        f"model source {source!r} is not a preset, not a checkpoint on this machine, and no config in {folder} has "
        f"it as output_dir; plan with a preset of the same shape: --model {{{', '.join(PRESETS)}}}"
    )


def _policy_only(overrides: dict) -> dict:
    from tulu_jax.stages.model_source import POLICY_FIELDS

    return {key: value for key, value in overrides.items() if key in POLICY_FIELDS}


def _with_policy(config: LlamaConfig, overrides: dict) -> LlamaConfig:
    """The execution policy of this stage (dtypes, remat, scan, attention) on a model found elsewhere."""
    return config.replace(**_policy_only(overrides))
