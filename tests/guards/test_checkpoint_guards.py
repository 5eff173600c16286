"""Checkpoints carry their own health: non-finite or damaged steps are skipped and moved aside (so the run can
save that step again), and a resume with another model's shapes names the difference instead of calling it damage."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec

from tulu_jax.checkpoint import CheckpointConfig, Checkpointer, CheckpointMismatchError, check_finite
from tulu_jax.errors import CheckpointError
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.training.state import TrainState, abstract_state, state_shardings


def small_state(step: int, width: int = 4, poison: bool = False):
    kernel = jnp.arange(3.0 * width).reshape(3, width) * (step + 1)
    if poison:
        kernel = kernel.at[1, 2].set(jnp.nan)
    params = {"dense": {"kernel": kernel}, "norm": {"scale": jnp.ones(width) * step}}
    optimizer = optax.adamw(1e-3)
    state = TrainState(step=jnp.int32(step), params=params, opt_state=optimizer.init(params),
                       rng=jax.random.key_data(jax.random.PRNGKey(step)))
    return state, optimizer, params


def abstract_for(optimizer, params):
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    axes = {"dense": {"kernel": PartitionSpec("embed", "mlp")}, "norm": {"scale": PartitionSpec("norm")}}
    shapes = jax.eval_shape(lambda: params)
    return abstract_state(optimizer, shapes, state_shardings(mesh, optimizer, shapes, axes))


def save_steps(directory, states):
    checkpointer = Checkpointer(directory, CheckpointConfig(keep=5, async_save=False))
    for step, state in states:
        checkpointer.save(step, state, {"step": step}, {"resolved_model": {"hidden_size": 4, "num_layers": 1}})
    checkpointer.wait()
    return checkpointer


def truncate_state_files(step_dir):
    damaged = [file for file in (step_dir / "state").rglob("*") if file.is_file()]
    for file in damaged:
        file.write_bytes(b"")
    assert damaged


def test_damaged_newest_step_is_moved_aside_and_the_run_can_save_it_again(tmp_path, caplog):
    directory = tmp_path / "checkpoints"
    state1, optimizer, params = small_state(1)
    save_steps(directory, [(1, state1), (2, small_state(2)[0])]).close()
    truncate_state_files(directory / "2")
    checkpointer = Checkpointer(directory, CheckpointConfig(keep=5, async_save=False))
    with caplog.at_level(logging.WARNING):
        restored = checkpointer.restore_latest(abstract_for(optimizer, params))
    assert restored.step == 1 and restored.data_state == {"step": 1}
    assert (directory / "2.damaged-1" / "state").is_dir() and not (directory / "2").exists()  # renamed, not deleted
    assert any("moved the damaged checkpoint" in record.getMessage() for record in caplog.records)
    # Before: orbax StepAlreadyExistsError on every rerun. Now the replayed step 2 saves and restores.
    assert checkpointer.save(2, small_state(2)[0], {"step": 2}, {}, force=True)
    checkpointer.wait()
    assert checkpointer.steps() == [1, 2]
    again = Checkpointer(directory, CheckpointConfig(async_save=False)).restore_latest(abstract_for(optimizer, params))
    assert again.step == 2 and float(again.state.params["dense"]["kernel"][0, 1]) == 3.0


def test_a_step_with_non_finite_params_is_never_restored(tmp_path):
    directory = tmp_path / "checkpoints"
    state1, optimizer, params = small_state(1)
    save_steps(directory, [(1, state1), (2, small_state(2, poison=True)[0])]).close()
    checkpointer = Checkpointer(directory, CheckpointConfig(async_save=False))
    with pytest.raises(CheckpointError, match=r"checkpoints/2 holds NaN or infinite values \(in params.dense.kernel"):
        checkpointer.restore(2, abstract_for(optimizer, params))
    restored = checkpointer.restore_latest(abstract_for(optimizer, params))
    assert restored.step == 1 and (directory / "2.damaged-1").is_dir()


def test_all_steps_damaged_is_an_error_and_nothing_is_moved(tmp_path):
    directory = tmp_path / "checkpoints"
    state1, optimizer, params = small_state(1)
    save_steps(directory, [(1, small_state(1, poison=True)[0])]).close()
    with pytest.raises(CheckpointError, match=r"none of the checkpoints .* \(steps \[1\]\) could be restored"):
        Checkpointer(directory, CheckpointConfig(async_save=False)).restore_latest(abstract_for(optimizer, params))
    assert (directory / "1").is_dir()


def test_changed_model_shape_names_the_fields_and_is_not_called_corruption(tmp_path, caplog):
    directory = tmp_path / "checkpoints"
    save_steps(directory, [(1, small_state(1)[0]), (2, small_state(2)[0])]).close()
    _, optimizer, wider = small_state(0, width=6)
    checkpointer = Checkpointer(directory, CheckpointConfig(async_save=False))
    run_config = {"resolved_model": {"hidden_size": 6, "num_layers": 1}}
    with caplog.at_level(logging.WARNING), pytest.raises(CheckpointMismatchError) as caught:
        checkpointer.restore_latest(abstract_for(optimizer, wider), run_config)
    message = str(caught.value)
    assert message.startswith("shape mismatch") and "params.dense.kernel saved (3, 4), now (3, 6)" in message
    assert "hidden_size: 4 -> 6" in message and "num_layers" not in message
    assert message.index("hidden_size") < message.index("params.dense.kernel") and "checkpoint is intact" in message
    assert "corrupt" not in message and not any("corrupt" in r.getMessage() for r in caplog.records)
    assert checkpointer.steps() == [1, 2] and not list(directory.glob("*.damaged-*"))  # healthy steps untouched


def test_check_finite_names_the_leaf():
    check_finite({"a": jnp.ones(3), "step": jnp.int32(1)}, "state")
    with pytest.raises(CheckpointError, match=r"state holds NaN or infinite values \(in b\)"):
        check_finite({"a": jnp.ones(3), "b": jnp.array([1.0, np.inf])}, "state")
