"""Train-state checkpoints with Orbax: async saves, keep the last K, exact resume, fall back past a bad one.

Each checkpoint ``<directory>/<step>/`` holds four items:
  ``state``  the ``TrainState`` (params, optimizer state, step, RNG), sharded arrays written by each host;
  ``data``   the data iterator state (JSON), so a resumed run reads the very next batch;
  ``config`` the resolved run config (JSON; the stage also writes it as YAML beside the checkpoints);
  ``fingerprints`` one 32-bit fingerprint of the exact bits of each array of ``state`` (JSON; see
             ``checkpoint_fingerprint``), computed on device when the step is saved.
Orbax writes a step into a temporary directory and renames it when complete, so a run killed mid-save
leaves no half-written step behind. A step that is damaged afterwards (unreadable, holding non-finite
numbers, or holding arrays whose fingerprints differ from the saved ones: a flipped bit that left the number
finite) fails to restore; ``restore_latest`` then warns, takes the previous one, and moves the damaged step
aside to ``<step>.damaged-<n>`` (kept for inspection, ignored by Orbax) so the run can save that step again.
Steps saved before fingerprints existed restore as before, without that check. A checkpoint whose array
shapes differ from the model being resumed is a configuration mismatch, not damage: it is reported with the
differing fields and never skipped or moved.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from data_pipeline.paths import as_path
from tulu_jax import distributed
from tulu_jax.checkpoint_fingerprint import check_fingerprints, fingerprints, leaves_by_path
from tulu_jax.errors import CheckpointError

log = logging.getLogger(__name__)

ITEMS = ("state", "data", "config", "fingerprints")


@dataclass(frozen=True)
class CheckpointConfig:
    save_every: int = 500  # optimizer steps between saves (the last step is always saved); 0: only at the end
    keep: int = 3  # most recent checkpoints kept
    async_save: bool = True
    resume: bool = True  # continue from the newest checkpoint in output_dir/checkpoints when there is one

    def __post_init__(self) -> None:
        if self.save_every < 0:
            raise CheckpointError(f"checkpoint.save_every must be non-negative, got {self.save_every}")
        if self.keep < 1:
            raise CheckpointError(f"checkpoint.keep must be at least 1, got {self.keep}")


@dataclass
class Restored:
    step: int
    state: Any
    data_state: Optional[dict]
    config: Optional[dict]


class Checkpointer:
    """Saves and restores ``TrainState``s plus JSON side items under ``directory``."""

    def __init__(self, directory: str | Path, config: CheckpointConfig = CheckpointConfig()):
        self.directory = as_path(directory)
        self.directory = self.directory if "://" in str(self.directory) else self.directory.absolute()
        self.config = config
        options = ocp.CheckpointManagerOptions(
            max_to_keep=config.keep,
            enable_async_checkpointing=config.async_save,
            create=True,
            cleanup_tmp_directories=True,  # left by a run killed mid-save
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, data_state: Optional[dict], config: Optional[dict], force: bool = False) -> bool:
        """Start saving (async unless configured otherwise); returns whether a save was started.

        The fingerprints of ``state`` are computed first, on device (every process takes part)."""
        if not force and not self._manager.should_save(step):
            return False
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state or {}),
            config=ocp.args.JsonSave(config or {}),
            fingerprints=ocp.args.JsonSave(fingerprints(state)),
        )
        return bool(self._manager.save(step, args=args, force=force))

    def wait(self) -> None:
        """Block until the pending async save is committed to disk."""
        self._manager.wait_until_finished()

    def saved_config(self, step: int) -> Optional[dict]:
        """The run config saved with ``step`` (None when it cannot be read)."""
        try:
            return self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore())).config or None
        except Exception:  # noqa: BLE001 - an unreadable config is reported by restore, not here
            return None

    def restore(self, step: int, abstract_state: Any, run_config: Optional[dict] = None) -> Restored:
        """Restore ``step`` into the shapes, dtypes and shardings of ``abstract_state``.

        Raises ``CheckpointMismatchError`` when the saved arrays do not have the shapes of ``abstract_state``
        (naming the differing ``resolved_model`` fields first when ``run_config`` is given, then the arrays),
        and ``CheckpointError`` when the restored state holds NaN or infinite numbers or, for a step saved with
        fingerprints, when an array's fingerprint differs from the saved one (naming the arrays).
        """
        self._check_shapes(step, abstract_state, run_config)
        items = {"state": ocp.args.StandardRestore(abstract_state), "data": ocp.args.JsonRestore(),
                 "config": ocp.args.JsonRestore()}
        if saved_with_fingerprints(self.directory, step):
            items["fingerprints"] = ocp.args.JsonRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        where = f"checkpoint {self.directory}/{step}"
        check_finite(restored.state, where)
        check_fingerprints(restored.state, restored.get("fingerprints"), where)
        data_state = restored.data or None
        return Restored(step=step, state=restored.state, data_state=data_state, config=restored.config or None)

    def restore_latest(self, abstract_state: Any, run_config: Optional[dict] = None) -> Optional[Restored]:
        """The newest checkpoint that restores cleanly, or None when there is none.

        Each newer step that fails (unreadable, non-finite, or not matching its fingerprints) is warned about
        and, once an older one has restored, moved aside so that this run can save that step again. Every
        process takes the same decision. A shape mismatch is raised at once: it is the config that changed,
        not the checkpoint.
        """
        steps = self.steps()
        damaged = []
        for step in reversed(steps):
            try:
                restored, failure = self.restore(step, abstract_state, run_config), None
            except CheckpointMismatchError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure to read a step means: try the previous one
                restored, failure = None, error
            if _all_processes_agree(failure is None):
                self._move_aside(damaged)
                return restored
            error_text = str(failure).splitlines()[0][:300] if failure is not None and str(failure) else ""
            log.warning(
                "checkpoint %s/%d is incomplete or corrupt (%s: %s); falling back to the previous one",
                self.directory, step, type(failure).__name__ if failure is not None else "error on another process",
                error_text,
            )
            damaged.append(step)
        if steps:
            raise CheckpointError(
                f"none of the checkpoints in {self.directory} (steps {steps}) could be restored; "
                "delete the directory to start over"
            )
        return None

    def _check_shapes(self, step: int, abstract_state: Any, run_config: Optional[dict]) -> None:
        """Compare the saved arrays' shapes (Orbax metadata, no array read) with ``abstract_state``'s."""
        try:
            handler = ocp.StandardCheckpointHandler()
            saved_tree = handler.metadata(self.directory / str(step) / "state").tree
            handler.close()
        except Exception:  # noqa: BLE001 - unreadable metadata is damage; restore reports it
            return
        saved = {path: tuple(leaf.shape) for path, leaf in leaves_by_path(saved_tree) if hasattr(leaf, "shape")}
        wanted = {path: tuple(leaf.shape) for path, leaf in leaves_by_path(abstract_state) if hasattr(leaf, "shape")}
        differences = [f"{path} saved {saved[path]}, now {wanted[path]}"
                       for path in sorted(set(saved) & set(wanted)) if saved[path] != wanted[path]]
        differences += [f"{path} only in the checkpoint" for path in sorted(set(saved) - set(wanted))]
        differences += [f"{path} not in the checkpoint" for path in sorted(set(wanted) - set(saved))]
        if not differences:
            return
        # Parameters first: the optimizer's moments only mirror them.
        differences.sort(key=lambda text: not text.startswith("params."))
        fields = ""
        saved_model = (self.saved_config(step) or {}).get("resolved_model")
        current_model = (run_config or {}).get("resolved_model")
        if isinstance(saved_model, dict) and isinstance(current_model, dict):
            changed = [f"{key}: {saved_model.get(key)!r} -> {current_model.get(key)!r}"
                       for key in sorted(set(saved_model) | set(current_model))
                       if saved_model.get(key) != current_model.get(key)]
            fields = f"model fields (checkpoint -> config): {', '.join(changed)}; arrays: " if changed else ""
        shown = "; ".join(differences[:6]) + (f"; and {len(differences) - 6} more" if len(differences) > 6 else "")
        raise CheckpointMismatchError(
            f"shape mismatch: checkpoint {self.directory}/{step} was saved for a different model than the one "
            f"configured ({fields}{shown}). The checkpoint is intact: resume with the model it was saved "
            "with, or choose another output_dir for the new model"
        )

    def _move_aside(self, steps: list[int]) -> None:
        """Rename damaged steps to ``<step>.damaged-<n>`` (process 0; the others wait), then rescan."""
        if not steps:
            return
        if jax.process_index() == 0:
            for step in steps:
                source = self.directory / str(step)
                number = 1
                while (self.directory / f"{step}.damaged-{number}").exists():
                    number += 1
                target = self.directory / f"{step}.damaged-{number}"
                source.rename(target)  # epath: a local rename, or a copy-and-delete on GCS
                log.warning("moved the damaged checkpoint %s aside to %s", source, target.name)
        distributed.barrier("checkpoint moved aside")
        self._manager.reload()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


class CheckpointMismatchError(CheckpointError):
    """The checkpoint holds a model of other shapes than the one configured (a config change, not damage)."""


@jax.jit
def _any_non_finite(tree: Any) -> jax.Array:
    flags = [jnp.any(~jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.any(jnp.stack(flags)) if flags else jnp.bool_(False)


def non_finite_paths(tree: Any, limit: int = 5) -> list[str]:
    """Paths of (at most ``limit``) floating leaves of ``tree`` holding NaN or infinity; one reduction when all
    are finite, so it is cheap to call before a save. Works on sharded arrays (a global reduction)."""
    if not bool(_any_non_finite(tree)):
        return []
    found = []
    for path, leaf in leaves_by_path(tree):
        if jnp.issubdtype(leaf.dtype, jnp.inexact) and bool(_any_non_finite(leaf)):
            found.append(path)
            if len(found) == limit:
                break
    return found


def check_finite(tree: Any, where: str) -> None:
    """Raise ``CheckpointError`` naming ``where`` and the first bad arrays when ``tree`` holds NaN or infinity."""
    bad = non_finite_paths(tree)
    if bad:
        raise CheckpointError(f"{where} holds NaN or infinite values (in {', '.join(bad)}); it is damaged or diverged")


def _all_processes_agree(ok: bool) -> bool:
    """True only when ``ok`` holds on every process (a restore decision must be the same everywhere)."""
    return distributed.all_agree("checkpoint restored", ok)


def saved_with_fingerprints(directory: Path, step: int) -> bool:
    """Whether ``step`` was saved with fingerprints (steps saved before they existed were not)."""
    return (as_path(directory) / str(step) / "fingerprints").exists()


def find_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoints directory of a run directory, or ``path`` itself when it already is one."""
    path = as_path(path)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if path.is_dir():
        return path
    raise CheckpointError(f"no checkpoint directory at {path}: give a run's output_dir or its checkpoints/ folder")


def clear(directory: str | Path) -> None:
    """Remove every checkpoint under ``directory`` (used when a run is started afresh on purpose)."""
    if jax.process_index() == 0 and as_path(directory).exists():
        shutil.rmtree(directory)
