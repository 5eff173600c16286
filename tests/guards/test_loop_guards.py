"""The loop never saves a diverged state, logs each step once across a resume, and warns about a changed
learning rate on resume."""

from __future__ import annotations

import json
import logging
import shutil

import jax
import jax.numpy as jnp
import optax
import pytest

from tulu_jax.checkpoint import CheckpointConfig, Checkpointer
from tulu_jax.training.loop import LoopSpec, TrainingDivergedError, run_training
from tulu_jax.training.metrics import MetricsLogger
from tulu_jax.training.state import TrainState


class Batches:
    def __init__(self):
        self.index = 0

    def __next__(self):
        self.index += 1
        return {"x": jnp.full((2,), float(self.index))}

    def get_state(self):
        return {"index": self.index}

    def set_state(self, state):
        self.index = state["index"]


def initial_state() -> TrainState:
    params = {"w": jnp.zeros(3)}
    return TrainState(step=jnp.int32(0), params=params, opt_state=optax.sgd(1.0).init(params),
                      rng=jax.random.key_data(jax.random.PRNGKey(0)))


def target(state):
    return jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding), state)


def diverging_update_step(bad_update: int, grad_norm_at: int = 0):
    """Like a real step: the loss is computed from the params BEFORE the update. Update ``bad_update`` writes NaN
    into the params, so its own loss is finite and only the next step's loss is NaN."""

    def step(state, batch):
        done = int(state.step) + 1
        loss = jnp.where(jnp.all(jnp.isfinite(state.params["w"])), batch["x"][0], jnp.nan)
        params = {"w": state.params["w"] + (jnp.nan if done == bad_update else 1.0)}
        grad_norm = jnp.float32(jnp.inf if done == grad_norm_at else 1.0)
        return state.replace(step=state.step + 1, params=params), {"loss": loss, "grad_norm": grad_norm}

    return step


def spec_for(tmp_path, total, save_every=2, run_config=None):
    checkpointer = Checkpointer(tmp_path / "checkpoints", CheckpointConfig(keep=5, async_save=True))
    return LoopSpec(total_steps=total, logger=MetricsLogger(tmp_path, tensorboard=False),
                    log_every=1, checkpointer=checkpointer, save_every=save_every, progress_bar=False,
                    run_config=run_config or {})


def test_a_diverging_update_is_never_saved_and_the_last_good_checkpoint_is_finite(tmp_path):
    spec = spec_for(tmp_path, total=10)
    # Update 4 produces NaN params with a finite loss; step 4 is a save step. Before: step 4 was saved and then
    # reported as the last good checkpoint when step 5's loss came out NaN.
    with pytest.raises(TrainingDivergedError, match=r"update of step 4 made the state non-finite .*params\.w.*"
                                                     r"Last good checkpoint: step 2 in"):
        run_training(initial_state(), diverging_update_step(bad_update=4), Batches(), spec)
    assert spec.checkpointer.steps() == [2]
    restored = spec.checkpointer.restore_latest(target(initial_state()))
    assert restored.step == 2 and float(restored.state.params["w"][0]) == 2.0


def test_a_non_finite_gradient_norm_stops_the_run(tmp_path):
    spec = spec_for(tmp_path, total=10)
    with pytest.raises(TrainingDivergedError, match=r"grad_norm became inf at step 3.*step 2 in"):
        run_training(initial_state(), diverging_update_step(bad_update=99, grad_norm_at=3), Batches(), spec)
    assert spec.checkpointer.steps() == [2]


def test_replayed_steps_are_logged_once_in_metrics_jsonl(tmp_path):
    step = diverging_update_step(bad_update=99)
    first = spec_for(tmp_path, total=3)
    run_training(initial_state(), step, Batches(), first)
    first.logger.close()
    # A kill after step 3 was logged but before its checkpoint was committed: only step 2 survives, plus a torn line.
    shutil.rmtree(tmp_path / "checkpoints" / "3")
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 3, "lo')
    second = spec_for(tmp_path, total=4)
    batches = Batches()
    restored = second.checkpointer.restore_latest(target(initial_state()))
    batches.set_state(restored.data_state)
    run_training(restored.state, step, batches, second)
    second.logger.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    lines = [line for line in lines if "step" in line]  # (header lines without a step are kept as they are)
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert [line["loss"] for line in lines] == [1.0, 2.0, 3.0, 4.0]


def test_a_changed_learning_rate_on_resume_is_warned_about(tmp_path, caplog):
    step = diverging_update_step(bad_update=99)
    saved_config = {"optimizer": {"learning_rate": 1e-5, "beta1": 0.9}, "training": {"max_steps": 2}}
    first = spec_for(tmp_path, total=2, run_config=saved_config)
    run_training(initial_state(), step, Batches(), first)
    first.logger.close()
    changed = {"optimizer": {"learning_rate": 3e-5, "beta1": 0.9}, "training": {"max_steps": 4}}
    second = spec_for(tmp_path, total=4, run_config=changed)
    restored = second.checkpointer.restore_latest(target(initial_state()))
    batches = Batches()
    batches.set_state(restored.data_state)
    with caplog.at_level(logging.WARNING, logger="tulu_jax.training.loop"):
        run_training(restored.state, step, batches, second)
    messages = [record.getMessage() for record in caplog.records if record.name == "tulu_jax.training.loop"]
    assert any("optimizer.learning_rate=3e-05" in m and "trained with 1e-05" in m for m in messages)
    assert any("training.max_steps: 2 -> 4" in m for m in messages)
    assert not any("beta1" in m for m in messages)
    # Resuming with the same config warns about nothing.
    caplog.clear()
    third = spec_for(tmp_path, total=4, run_config=changed)
    restored = third.checkpointer.restore_latest(target(initial_state()))
    with caplog.at_level(logging.WARNING, logger="tulu_jax.training.loop"):
        run_training(restored.state, step, batches, third)
    assert not [record for record in caplog.records if record.name == "tulu_jax.training.loop"]


def test_output_dir_that_is_a_file_is_a_one_line_error(tmp_path):
    from tulu_jax.errors import ConfigError

    a_file = tmp_path / "run"
    a_file.write_text("")
    with pytest.raises(ConfigError, match="is a file, not a directory"):
        MetricsLogger(a_file, tensorboard=False)
