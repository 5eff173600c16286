"""The loop: metrics go to JSONL and TensorBoard, and a NaN loss stops the run keeping the last good checkpoint."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import optax
import pytest

from tulu_jax.checkpoint import CheckpointConfig, Checkpointer
from tulu_jax.training.hooks import Throughput
from tulu_jax.training.loop import LoopSpec, TrainingDivergedError, run_training
from tulu_jax.training.metrics import MetricsLogger
from tulu_jax.training.state import TrainState


class CountingBatches:
    def __init__(self):
        self.index = 0

    def __next__(self):
        self.index += 1
        return {"x": jnp.full((2,), float(self.index))}

    def get_state(self):
        return {"step": self.index}


def fake_step(nan_at: int):
    """A step whose loss is the batch value, NaN from step ``nan_at`` on; params count the steps."""

    def step(state, batch):
        done = int(state.step) + 1
        loss = float("nan") if done >= nan_at else float(batch["x"][0])
        params = jax.tree.map(lambda p: p + 1, state.params)
        return state.replace(step=state.step + 1, params=params), {"loss": jnp.float32(loss), "grad_norm": jnp.float32(1.0)}

    return step


def initial_state() -> TrainState:
    params = {"w": jnp.zeros(3)}
    return TrainState(step=jnp.int32(0), params=params, opt_state=optax.sgd(1.0).init(params),
                      rng=jax.random.key_data(jax.random.PRNGKey(0)))


def test_nan_loss_stops_with_the_last_good_checkpoint_kept(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints", CheckpointConfig(keep=5, async_save=True))
    logger = MetricsLogger(tmp_path, tensorboard=True)
    spec = LoopSpec(total_steps=10, logger=logger, log_every=1,
                    checkpointer=checkpointer, save_every=2, progress_bar=False,
                    hooks=(Throughput(tokens_per_step=4),))
    with pytest.raises(TrainingDivergedError, match=r"nan at step 5.*step 4"):
        run_training(initial_state(), fake_step(nan_at=5), CountingBatches(), spec)
    logger.close()
    assert checkpointer.steps() == [2, 4]
    header, *lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert header == {"process_count": 1, "device_count": 8, "local_device_count": 8}
    assert [line["step"] for line in lines] == [1, 2, 3, 4]
    assert [line["loss"] for line in lines] == [1.0, 2.0, 3.0, 4.0]
    assert "tokens_per_second" in lines[-1] and "tokens_per_second" not in lines[0]  # first step compiles
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_completed_run_saves_the_last_step(tmp_path):
    checkpointer = Checkpointer(tmp_path / "checkpoints", CheckpointConfig(async_save=False))
    spec = LoopSpec(total_steps=3, logger=MetricsLogger(tmp_path, tensorboard=False),
                    checkpointer=checkpointer, save_every=0, progress_bar=True)
    state = run_training(initial_state(), fake_step(nan_at=99), CountingBatches(), spec)
    assert int(state.step) == 3 and float(state.params["w"][0]) == 3.0
    assert checkpointer.steps() == [3]


class RecordedScalar:
    """A metric value that notes when the loop reads it."""

    def __init__(self, events: list, step: int, value: float):
        self.events, self.step, self.value = events, step, value

    def __float__(self) -> float:
        self.events.append(("read", self.step))
        return self.value


def test_scalars_are_read_after_the_next_step_is_dispatched(tmp_path):
    events = []

    def step(state, batch):
        done = int(state.step) + 1
        events.append(("dispatch", done))
        loss = float("nan") if done >= 5 else 1.0
        return state.replace(step=state.step + 1), {"loss": RecordedScalar(events, done, loss)}

    checkpointer = Checkpointer(tmp_path / "checkpoints", CheckpointConfig(async_save=False))
    spec = LoopSpec(total_steps=10, logger=MetricsLogger(tmp_path, tensorboard=False),
                    log_every=100, checkpointer=checkpointer, save_every=3, progress_bar=False)
    batches = CountingBatches()
    with pytest.raises(TrainingDivergedError, match=r"nan at step 5.*step 3"):
        run_training(initial_state(), step, batches, spec)
    # Step 1 (compiles) and step 3 (saves) are read at once; the others after the next dispatch.
    assert events == [("dispatch", 1), ("read", 1), ("dispatch", 2), ("dispatch", 3), ("read", 2), ("read", 3),
                      ("dispatch", 4), ("dispatch", 5), ("read", 4), ("dispatch", 6), ("read", 5)]
    assert checkpointer.steps() == [3]  # the state after the NaN step is never saved
    assert batches.index == 6
