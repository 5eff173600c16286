"""A stage's starting point: the newest checkpoint in its output_dir (and the data iterator there), or none."""

from __future__ import annotations

import logging
from typing import Any, Optional

from tulu_jax.errors import CheckpointError

log = logging.getLogger(__name__)


def resume_state(checkpointer, resume_configured: bool, resume: Optional[bool], abstract, batches, *,
                 run_config: dict) -> Any:
    """The restored state (and ``batches`` moved to the next batch), or None to start afresh.

    ``resume=None`` follows the config; True insists on a checkpoint; False refuses to overwrite one.
    ``run_config`` (``run_config_dict``) lets a shape mismatch name the ``resolved_model`` fields that differ.
    """
    wanted = resume_configured if resume is None else resume
    steps = checkpointer.steps()
    if not wanted:
        if steps:
            raise CheckpointError(
                f"{checkpointer.directory} already holds checkpoints {steps} and resuming is off; "
                "resume (checkpoint.resume=true), or choose another output_dir"
            )
        return None
    restored = checkpointer.restore_latest(abstract, run_config)
    if restored is None:
        if resume:
            raise CheckpointError(f"--resume: no checkpoint in {checkpointer.directory} to resume from")
        return None
    if restored.data_state:
        batches.set_state(restored.data_state)
    log.info("resumed from %s/%d", checkpointer.directory, restored.step)
    return restored.state
