"""Checkpoints: a round trip keeps every bit; a damaged newest checkpoint makes restore fall back, with a warning."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax

from tulu_jax.checkpoint import CheckpointConfig, Checkpointer
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.training.state import TrainState, abstract_state, state_shardings
from jax.sharding import PartitionSpec


def small_state(step: int) -> tuple[TrainState, optax.GradientTransformation, dict, dict]:
    params = {"dense": {"kernel": jnp.arange(12.0).reshape(3, 4) * (step + 1)}, "norm": {"scale": jnp.ones(4) * step}}
    axes = {"dense": {"kernel": PartitionSpec("embed", "mlp")}, "norm": {"scale": PartitionSpec("norm")}}
    optimizer = optax.adamw(1e-3)
    state = TrainState(step=jnp.int32(step), params=params, opt_state=optimizer.init(params),
                       rng=jax.random.key_data(jax.random.PRNGKey(step)))
    return state, optimizer, params, axes


def test_newest_damaged_checkpoint_falls_back_to_the_previous(tmp_path, caplog):
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    checkpointer = Checkpointer(tmp_path / "checkpoints", CheckpointConfig(keep=3, async_save=False))
    for step in (1, 2):
        state, optimizer, params, axes = small_state(step)
        checkpointer.save(step, state, {"step": step}, {"run": "test"})
    checkpointer.wait()
    shapes = jax.eval_shape(lambda: params)
    abstract = abstract_state(optimizer, shapes, state_shardings(mesh, optimizer, shapes, axes))

    restored = checkpointer.restore_latest(abstract)
    assert restored.step == 2 and restored.data_state == {"step": 2} and restored.config == {"run": "test"}
    for saved, loaded in zip(jax.tree.leaves(small_state(2)[0]), jax.tree.leaves(restored.state)):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded))

    # Damage step 2: truncate every array file of its state item.
    damaged = 0
    for file in (tmp_path / "checkpoints" / "2" / "state").rglob("*"):
        if file.is_file():
            file.write_bytes(b"")
            damaged += 1
    assert damaged
    with caplog.at_level(logging.WARNING):
        restored = Checkpointer(tmp_path / "checkpoints", CheckpointConfig(async_save=False)).restore_latest(abstract)
    assert restored.step == 1 and restored.data_state == {"step": 1}
    np.testing.assert_array_equal(np.asarray(restored.state.params["dense"]["kernel"]), np.arange(12.0).reshape(3, 4) * 2)
    assert any("corrupt" in record.getMessage() and "/2" in record.getMessage() for record in caplog.records)
