"""Sharded Hugging Face load and streamed export on a (data 2, fsdp 2, tensor 2) mesh of 8 CPU devices.

Every shard read slice by slice must equal the whole-tensor conversion, and the streamed export must write
the same bytes as the host export; both without ``process_allgather`` or ``assert_equal``.
"""

import json

import jax
import ml_dtypes
import numpy as np
import pytest
from jax.experimental import multihost_utils

from tests.models.hf_reference import save_random_hf_llama
from tulu_jax.errors import CheckpointError
from tulu_jax.hf import load_hf_checkpoint, read_checkpoint_dir, read_hf_config, save_hf_checkpoint
from tulu_jax.hf.safetensors_index import SafetensorsIndex
from tulu_jax.hf.sharded_load import load_hf_params_sharded
from tulu_jax.hf.streamed_export import export_params_streamed
from tulu_jax.models import param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, make_mesh, tree_shardings


@pytest.fixture(scope="module")
def hf_directory(tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf")
    save_random_hf_llama(directory)
    return directory


@pytest.fixture
def no_gathering(monkeypatch):
    calls = []
    for name in ("assert_equal", "process_allgather"):
        original = getattr(multihost_utils, name)
        monkeypatch.setattr(multihost_utils, name, lambda *a, _o=original, _n=name, **k: calls.append(_n) or _o(*a, **k))
    yield calls
    assert calls == []


def sharded(directory, mesh_config, **policy):
    config = read_hf_config(directory).replace(**policy)
    mesh = make_mesh(mesh_config)
    shardings = tree_shardings(mesh, param_logical_axes(config), param_shapes(config))
    return config, load_hf_params_sharded(directory, config, shardings), shardings


@pytest.mark.parametrize("scan_layers", [True, False], ids=["scan", "unrolled"])
@pytest.mark.parametrize("mesh_config", [MeshConfig(data=2, fsdp=2, tensor=2), MeshConfig(fsdp=1, tensor=8)],
                         ids=["2x2x2", "tensor8"])
def test_sharded_load_equals_the_host_conversion(hf_directory, scan_layers, mesh_config, no_gathering):
    config, params, shardings = sharded(hf_directory, mesh_config, scan_layers=scan_layers)
    _, expected = load_hf_checkpoint(hf_directory, scan_layers=scan_layers)
    jax.tree.map(lambda ours, reference: np.testing.assert_array_equal(np.asarray(ours), reference), params, expected)
    # Every leaf has the sharding the rules table asked for, and some leaf is really split over devices.
    assert jax.tree.leaves(jax.tree.map(lambda leaf, sharding: leaf.sharding == sharding, params, shardings)) == [True] * len(jax.tree.leaves(params))
    assert any(len({str(shard.index) for shard in leaf.addressable_shards}) > 1 for leaf in jax.tree.leaves(params))


def test_sharded_load_casts_slice_by_slice_to_bfloat16(hf_directory):
    _, params, _ = sharded(hf_directory, MeshConfig(data=2, fsdp=2, tensor=2), param_dtype="bfloat16")
    _, expected = load_hf_checkpoint(hf_directory, param_dtype="bfloat16")
    for ours, reference in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
        assert ours.dtype == ml_dtypes.bfloat16
        np.testing.assert_array_equal(np.asarray(ours), reference)


@pytest.mark.parametrize("max_shard_bytes", [5 * 2**30, 40_000], ids=["one-file", "sharded"])
def test_streamed_export_writes_the_host_export_bytes(hf_directory, tmp_path, max_shard_bytes, no_gathering):
    config, params, _ = sharded(hf_directory, MeshConfig(data=2, fsdp=2, tensor=2))
    host_config, host_params = load_hf_checkpoint(hf_directory)
    reference = save_hf_checkpoint(tmp_path / "host", host_params, host_config, max_shard_bytes=max_shard_bytes)
    streamed = export_params_streamed(str(tmp_path / "streamed"), params, config, max_shard_bytes=max_shard_bytes)
    ours, theirs = read_checkpoint_dir(streamed), read_checkpoint_dir(reference)
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name])
    shard_files = sorted(path.name for path in streamed.iterdir() if path.name.endswith(".safetensors"))
    assert shard_files == sorted(path.name for path in reference.iterdir() if path.name.endswith(".safetensors"))
    assert (len(shard_files) > 1) == (max_shard_bytes == 40_000)
    # No staging or temporary directory is left beside the export.
    assert sorted(path.name for path in tmp_path.iterdir()) == ["host", "streamed"]


def test_streamed_export_casts_to_bfloat16_and_replaces_the_old_directory_whole(hf_directory, tmp_path):
    config, params, _ = sharded(hf_directory, MeshConfig(data=2, fsdp=2, tensor=2))
    target = tmp_path / "export"
    target.mkdir()
    (target / "model-00001-of-00009.safetensors").write_bytes(b"stale")
    export_params_streamed(str(target), params, config, dtype="bfloat16")
    assert sorted(path.name for path in target.iterdir()) == ["model.safetensors"]
    tensors = read_checkpoint_dir(target)
    assert {array.dtype for array in tensors.values()} == {np.dtype(ml_dtypes.bfloat16)}
    with pytest.raises(CheckpointError, match="--overwrite"):
        export_params_streamed(str(target), params, config, overwrite=False)


def test_region_reads_only_the_requested_rectangle(hf_directory):
    index = SafetensorsIndex(hf_directory)
    whole = read_checkpoint_dir(hf_directory)["model.layers.0.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(index.read_region("model.layers.0.self_attn.q_proj.weight", slice(3, 17), slice(5, 40)),
                                  whole[3:17, 5:40])
    np.testing.assert_array_equal(index.read_region("model.layers.0.self_attn.q_proj.weight", slice(2, 4)), whole[2:4])


def test_lying_safetensors_headers_are_refused(hf_directory, tmp_path):
    raw = (hf_directory / "model.safetensors").read_bytes()
    (tmp_path / "config.json").write_text((hf_directory / "config.json").read_text())
    huge = (2**62).to_bytes(8, "little") + raw[8:]
    (tmp_path / "model.safetensors").write_bytes(huge)
    with pytest.raises(CheckpointError, match="header claims"):
        SafetensorsIndex(tmp_path)
    length = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + length])
    first, second = sorted((name for name in header if name != "__metadata__"), key=lambda n: header[n]["data_offsets"][0])[:2]
    header[second]["data_offsets"] = [header[first]["data_offsets"][0] + 4,
                                      header[first]["data_offsets"][0] + 4 + header[second]["data_offsets"][1] - header[second]["data_offsets"][0]]
    encoded = json.dumps(header).encode()
    (tmp_path / "model.safetensors").write_bytes(len(encoded).to_bytes(8, "little") + encoded + raw[8 + length :])
    with pytest.raises(CheckpointError, match="overlap|damaged"):
        SafetensorsIndex(tmp_path)
