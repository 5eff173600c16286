"""Read the model out of a stage's Orbax checkpoint (params and the model config saved beside them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import orbax.checkpoint as ocp

from tulu_jax.checkpoint import find_checkpoint_dir
from tulu_jax.config import from_dict
from tulu_jax.errors import CheckpointError
from tulu_jax.models.config import LlamaConfig


def checkpoint_model(path: str | Path, step: Optional[int] = None) -> tuple[LlamaConfig, Any, dict]:
    """``(model config, host params, run config)`` of a run's checkpoint (the newest unless ``step``)."""
    directory = find_checkpoint_dir(path).absolute()
    with ocp.CheckpointManager(directory, item_names=("state", "data", "config")) as manager:
        steps = sorted(manager.all_steps())
        if not steps:
            raise CheckpointError(f"{directory} holds no checkpoints")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(f"{directory} has no checkpoint for step {step}; it has {steps}")
        run_config = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config or {}
        if "resolved_model" not in run_config:
            raise CheckpointError(f"{directory}/{step}: the saved config has no resolved_model; cannot tell the shapes")
        config = from_dict(LlamaConfig, run_config["resolved_model"], where=f"{directory}/{step} config")
        # No target: Orbax gives back the saved tree as host arrays; only the params are kept.
        state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    params = state["params"] if isinstance(state, dict) else state.params
    if isinstance(params, dict) and "policy" in params:  # an RLVR state holds policy and value models
        params = params["policy"]
    return config, params, run_config
