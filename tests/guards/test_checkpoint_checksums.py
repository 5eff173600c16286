"""Checkpoints carry fingerprints of their arrays: a flipped bit in the saved data that leaves every number
finite (which Orbax reads back without complaint: it checksums no array data) fails the restore, the resume
falls back to the previous step, and ``convert --checkpoint`` refuses the params. The fingerprint does not
depend on the sharding and changes with any single bit."""

from __future__ import annotations

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tulu_jax.checkpoint import CheckpointConfig, Checkpointer
from tulu_jax.checkpoint_fingerprint import FORMAT, fingerprints, mismatched_paths
from tulu_jax.errors import CheckpointError
from tulu_jax.hf.from_checkpoint import checkpoint_model
from tulu_jax.models import LlamaConfig
from tulu_jax.models.params import init_params
from tulu_jax.training.state import TrainState


def random_state(seed: int, optimizer=optax.adamw(1e-3)) -> TrainState:
    """Random normal params (64x64: large enough to be stored in a data file, not inline in the index)."""
    params = {"dense": {"kernel": jax.random.normal(jax.random.PRNGKey(seed), (64, 64))}, "scale": jnp.ones(64)}
    return TrainState(step=jnp.int32(seed), params=params, opt_state=optimizer.init(params),
                      rng=jax.random.key_data(jax.random.PRNGKey(seed)))


def save(directory, steps: dict, config=None) -> None:
    checkpointer = Checkpointer(directory, CheckpointConfig(keep=5, async_save=False))
    for step, state in steps.items():
        checkpointer.save(step, state, {"step": step}, config or {})
    checkpointer.close()


def flip_a_bit_that_still_reads(step_dir, abstract, saved) -> None:
    """Flip one bit in the step's largest array data file such that plain Orbax (no checks of ours) still
    reads the state and every number is finite, yet the values differ from ``saved``: silent damage. The
    files are the same on every run, so the search is deterministic (it succeeds within a few tries)."""
    files = [file for file in (step_dir / "state").rglob("*") if file.is_file()]
    data_file = max(files, key=lambda file: file.stat().st_size)
    original = data_file.read_bytes()
    expected = [np.asarray(leaf) for leaf in jax.tree.leaves(saved)]
    for offset in range(len(original) // 2, len(original), 97):
        data_file.write_bytes(original[:offset] + bytes([original[offset] ^ 1]) + original[offset + 1:])
        try:
            read = [np.asarray(leaf) for leaf in jax.tree.leaves(ocp.StandardCheckpointer().restore(
                step_dir / "state", abstract))]
        except Exception:  # noqa: BLE001 - this flip made the data unreadable; try another
            continue
        finite = all(np.isfinite(leaf).all() for leaf in read if np.issubdtype(leaf.dtype, np.floating))
        if finite and any(not np.array_equal(a, b) for a, b in zip(read, expected)):
            return
    pytest.fail(f"no single bit flip in {data_file} restored finite but different values")


def test_a_flipped_bit_that_leaves_numbers_finite_fails_restore_and_the_previous_step_is_taken(tmp_path):
    directory = tmp_path / "checkpoints"
    states = {1: random_state(1), 2: random_state(2)}
    save(directory, states)
    abstract = jax.eval_shape(lambda: states[2])
    flip_a_bit_that_still_reads(directory / "2", abstract, states[2])
    checkpointer = Checkpointer(directory, CheckpointConfig(async_save=False))
    with pytest.raises(CheckpointError, match=r"checkpoints/2 does not hold the values that were saved "
                                              r"\(the fingerprints of params\.dense\.kernel differ"):
        checkpointer.restore(2, abstract)
    restored = checkpointer.restore_latest(abstract)
    assert restored.step == 1 and restored.data_state == {"step": 1}
    np.testing.assert_array_equal(restored.state.params["dense"]["kernel"], states[1].params["dense"]["kernel"])
    assert (directory / "2.damaged-1" / "state").is_dir() and checkpointer.steps() == [1]


def test_steps_saved_before_fingerprints_existed_restore_unchecked(tmp_path):
    directory = tmp_path / "checkpoints"
    state = random_state(1)
    save(directory, {1: state})
    abstract = jax.eval_shape(lambda: state)
    shutil.rmtree(directory / "1" / "fingerprints")  # what a checkpoint of an older tulu-jax looks like
    flip_a_bit_that_still_reads(directory / "1", abstract, state)
    restored = Checkpointer(directory, CheckpointConfig(async_save=False)).restore_latest(abstract)
    assert restored.step == 1  # as before: nothing to compare with


def test_restoring_into_another_dtype_is_not_damage(tmp_path):
    directory = tmp_path / "checkpoints"
    state = random_state(1)
    save(directory, {1: state})
    abstract = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(
        leaf.shape, jnp.bfloat16 if leaf.dtype == jnp.float32 else leaf.dtype), jax.eval_shape(lambda: state))
    restored = Checkpointer(directory, CheckpointConfig(async_save=False)).restore(1, abstract)
    assert restored.state.params["dense"]["kernel"].dtype == jnp.bfloat16  # cast by Orbax, fingerprint skipped


def test_convert_refuses_params_whose_fingerprints_differ(tmp_path):
    config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                         num_kv_heads=1, max_position_embeddings=64, rope_scaling=None)
    params = init_params(config, jax.random.PRNGKey(0))
    state = TrainState(step=jnp.int32(1), params=params, opt_state=optax.sgd(0.1).init(params),
                       rng=jax.random.key_data(jax.random.PRNGKey(1)))
    run_config = {"resolved_model": dataclasses.asdict(config)}
    save(tmp_path / "checkpoints", {1: state}, run_config)
    checkpoint_model(tmp_path)  # intact: exports
    flip_a_bit_that_still_reads(tmp_path / "checkpoints" / "1", jax.eval_shape(lambda: state), state)
    with pytest.raises(CheckpointError, match=r"checkpoints/1 does not hold the values that were saved "
                                              r"\(the fingerprints of params\."):
        checkpoint_model(tmp_path)


def reference_fingerprint(values: np.ndarray) -> int:
    """The documented formula in numpy, for float32: sum of bits(x_i) * w(i) mod 2**32."""
    bits = values.reshape(-1).view(np.uint32).astype(np.uint64)
    mixed = (np.arange(bits.size, dtype=np.uint64) * 0x9E3779B1) & 0xFFFFFFFF
    weights = (mixed ^ (mixed >> 16)) | 1
    return int(((bits * weights) & 0xFFFFFFFF).sum() & 0xFFFFFFFF)


def test_fingerprint_is_the_same_for_every_sharding_and_changes_with_one_bit():
    kernel = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (8, 16)))
    tree = {"kernel": kernel, "half": kernel.astype(jnp.bfloat16),
            "count": np.arange(24, dtype=np.int32), "mask": np.arange(16) % 3 == 0}
    single = fingerprints(jax.device_put(tree, jax.devices()[0]))
    assert single["format"] == FORMAT and set(single["leaves"]) == set(tree)
    assert single["leaves"]["kernel"] == {"dtype": "float32", "value": reference_fingerprint(kernel)}
    square = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("a", "b"))  # as tulu_jax.sharding builds meshes
    line = Mesh(np.array(jax.devices()[:8]), ("x",))
    for mesh, matrix_spec in ((square, PartitionSpec("a", "b")), (square, PartitionSpec(None, ("a", "b"))),
                              (line, PartitionSpec("x")), (square, PartitionSpec())):
        vector_spec = PartitionSpec(mesh.axis_names) if matrix_spec != PartitionSpec() else PartitionSpec()
        sharded = {name: jax.device_put(value, NamedSharding(mesh, matrix_spec if value.ndim == 2 else vector_spec))
                   for name, value in tree.items()}
        assert fingerprints(sharded) == single, (mesh.shape, matrix_spec)
    flipped = kernel.copy()
    flipped.view(np.uint32)[3, 5] ^= 1  # the lowest mantissa bit: still finite, nearly the same number
    assert np.isfinite(flipped).all() and mismatched_paths({**tree, "kernel": flipped}, single) == ["kernel"]
    swapped = tree["count"][::-1].copy()  # the same values in other places
    assert mismatched_paths({**tree, "count": swapped}, single) == ["count"]


def test_arrays_committed_to_different_devices_are_fingerprinted_too():
    tree = {"a": jax.device_put(jnp.arange(4.0), jax.devices()[1]),
            "b": jax.device_put(jnp.arange(4.0), jax.devices()[0])}
    values = fingerprints(tree)["leaves"]
    assert values["a"] == values["b"] == fingerprints({"a": np.arange(4.0, dtype=np.float32)})["leaves"]["a"]
