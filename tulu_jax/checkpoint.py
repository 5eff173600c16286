"""Train-state checkpoints with Orbax: async saves, keep the last K, exact resume, fall back past a bad one.

Each checkpoint ``<directory>/<step>/`` holds three items:
  ``state``  the ``TrainState`` (params, optimizer state, step, RNG), sharded arrays written by each host;
  ``data``   the data iterator state (JSON), so a resumed run reads the very next batch;
  ``config`` the resolved run config (JSON; the stage also writes it as YAML beside the checkpoints).
Orbax writes a step into a temporary directory and renames it when complete, so a run killed mid-save
leaves no half-written step behind; a step that is damaged afterwards fails to restore, and
``restore_latest`` then warns and takes the previous one.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp

from tulu_jax.errors import CheckpointError

log = logging.getLogger(__name__)

ITEMS = ("state", "data", "config")


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
        self.directory = Path(directory).absolute()
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
        """Start saving (async unless configured otherwise); returns whether a save was started."""
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=ocp.args.JsonSave(data_state or {}),
            config=ocp.args.JsonSave(config or {}),
        )
        return bool(self._manager.save(step, args=args, force=force))

    def wait(self) -> None:
        """Block until the pending async save is committed to disk."""
        self._manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> Restored:
        """Restore ``step`` into the shapes, dtypes and shardings of ``abstract_state``."""
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=ocp.args.JsonRestore(),
            config=ocp.args.JsonRestore(),
        )
        restored = self._manager.restore(step, args=args)
        data_state = restored.data or None
        return Restored(step=step, state=restored.state, data_state=data_state, config=restored.config or None)

    def restore_latest(self, abstract_state: Any) -> Optional[Restored]:
        """The newest checkpoint that restores cleanly (warning about each damaged one skipped), or None."""
        steps = self.steps()
        for step in reversed(steps):
            try:
                return self.restore(step, abstract_state)
            except Exception as error:  # noqa: BLE001 - any failure to read a step means: try the previous one
                log.warning(
                    "checkpoint %s/%d is incomplete or corrupt (%s: %s); falling back to the previous one",
                    self.directory, step, type(error).__name__, str(error).splitlines()[0][:300] if str(error) else "",
                )
        if steps:
            raise CheckpointError(
                f"none of the checkpoints in {self.directory} (steps {steps}) could be restored; "
                "delete the directory to start over"
            )
        return None

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def find_checkpoint_dir(path: str | Path) -> Path:
    """The checkpoints directory of a run directory, or ``path`` itself when it already is one."""
    path = Path(path)
    if (path / "checkpoints").is_dir():
        return path / "checkpoints"
    if path.is_dir():
        return path
    raise CheckpointError(f"no checkpoint directory at {path}: give a run's output_dir or its checkpoints/ folder")


def clear(directory: str | Path) -> None:
    """Remove every checkpoint under ``directory`` (used when a run is started afresh on purpose)."""
    if jax.process_index() == 0 and Path(directory).exists():
        shutil.rmtree(directory)
