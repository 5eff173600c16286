"""Read the model out of a stage's Orbax checkpoint: only the params, restored straight into their shards.

The optimizer state is never read. The params are laid out on a mesh of all devices by the logical-axis
rules, so every process reads only the slices its devices hold, as the sharded HF load does. The params are
checked like a resume checks the whole state: finite, and (for steps saved with fingerprints) holding the
bits that were saved.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from tulu_jax.checkpoint import ITEMS, check_finite, find_checkpoint_dir, saved_with_fingerprints
from tulu_jax.checkpoint_fingerprint import check_fingerprints
from tulu_jax.config import from_dict
from tulu_jax.errors import CheckpointError
from tulu_jax.models import param_logical_axes
from tulu_jax.models.config import LlamaConfig
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, make_mesh, tree_shardings


def checkpoint_model(path: str | os.PathLike, step: Optional[int] = None) -> tuple[LlamaConfig, Any, dict]:
    """``(model config, sharded params, run config)`` of a run's checkpoint (the newest unless ``step``)."""
    directory = find_checkpoint_dir(path)
    with ocp.CheckpointManager(directory, item_names=ITEMS) as manager:
        steps = sorted(manager.all_steps())
        if not steps:
            raise CheckpointError(f"{directory} holds no checkpoints")
        if step is None:
            step = steps[-1]
        elif step not in steps:
            raise CheckpointError(f"{directory} has no checkpoint for step {step}; it has {steps}")
        side = {"config": ocp.args.JsonRestore()}
        if saved_with_fingerprints(directory, step):
            side["fingerprints"] = ocp.args.JsonRestore()
        side_items = manager.restore(step, args=ocp.args.Composite(**side))
        run_config = side_items.config or {}
        model_fields = run_config.get("resolved_model") or run_config.get("resolved_policy")
        if not model_fields:
            raise CheckpointError(f"{directory}/{step}: the saved config has no resolved_model; cannot tell the shapes")
        config = from_dict(LlamaConfig, model_fields, where=f"{directory}/{step} config")
        handler = ocp.StandardCheckpointHandler()
        saved = handler.metadata(directory / str(step) / "state").tree  # shapes and dtypes, no array read
        handler.close()
        where = _params_path(saved, f"{directory}/{step}")
        leaf = jax.tree.leaves(_subtree(saved, where))[0]
        config = config.replace(param_dtype="bfloat16" if "bfloat16" in str(leaf.dtype) else "float32")
        mesh = make_mesh(MeshConfig(), jax.devices())
        shardings = tree_shardings(mesh, param_logical_axes(config), param_shapes(config))
        abstract = jax.tree.map(lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
                                param_shapes(config), shardings)
        item = abstract
        for key in reversed(where):
            item = {key: item}
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True)))
    params = _subtree(restored.state, where)
    check_finite(params, f"checkpoint {directory}/{step}")  # a diverged or damaged step is never exported
    # The fingerprints are per leaf path ("params.…", "policy.…"), so the params subset is checked on its own.
    check_fingerprints(restored.state, side_items.get("fingerprints"), f"checkpoint {directory}/{step}")
    return config, params, run_config


def _params_path(saved: Any, where: str) -> tuple[str, ...]:
    """Where the model's params sit in a saved state: a stage's train state (``params``), an RLVR train state
    (``params.policy``; the value model beside it is not read) or RLVR's kept best policy (``policy``)."""
    tree = saved if isinstance(saved, dict) else {"params": saved.params}
    if "params" in tree:
        return ("params", "policy") if isinstance(tree["params"], dict) and "policy" in tree["params"] else ("params",)
    if "policy" in tree:
        return ("policy",)
    raise CheckpointError(f"{where}: the saved state holds no model params (no 'params' or 'policy')")


def _subtree(tree: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        tree = tree[key] if isinstance(tree, dict) else getattr(tree, key)
    return tree
