"""After a resume, TensorBoard shows each replayed step once, with the value of the resumed run."""

from __future__ import annotations

import shutil

from tests.guards.test_loop_guards import Batches, initial_state, target
from tests.helpers.tensorboard_events import displayed_scalars
from tulu_jax.checkpoint import CheckpointConfig, Checkpointer
from tulu_jax.training.loop import LoopSpec, run_training
from tulu_jax.training.metrics import MetricsLogger


def step_with_loss_offset(offset: float):
    """A step whose loss is the batch value plus ``offset``, so the two runs' values of a step differ."""

    def step(state, batch):
        return state.replace(step=state.step + 1), {"loss": batch["x"][0] + offset}

    return step


def spec_for(run_dir, total):
    checkpointer = Checkpointer(run_dir / "checkpoints", CheckpointConfig(keep=5, async_save=False))
    return LoopSpec(total_steps=total, logger=MetricsLogger(run_dir, tensorboard=True),
                    log_every=1, checkpointer=checkpointer, save_every=2, progress_bar=False, run_config={})


def test_replayed_steps_show_once_in_tensorboard_with_the_resumed_value(tmp_path):
    first = spec_for(tmp_path, total=3)
    run_training(initial_state(), step_with_loss_offset(0.0), Batches(), first)
    first.logger.close()
    # The kill came after step 3 was logged but before its checkpoint was committed: the resume starts at step 2.
    shutil.rmtree(tmp_path / "checkpoints" / "3")
    second = spec_for(tmp_path, total=4)
    restored = second.checkpointer.restore_latest(target(initial_state()))
    batches = Batches()
    batches.set_state(restored.data_state)
    run_training(restored.state, step_with_loss_offset(0.5), batches, second)
    second.logger.close()
    assert len(list((tmp_path / "tensorboard").glob("*tfevents*"))) == 2
    loss = displayed_scalars(tmp_path / "tensorboard")["loss"]
    assert loss == {1: [1.0], 2: [2.0], 3: [3.5], 4: [4.5]}
