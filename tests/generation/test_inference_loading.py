"""How ``eval`` and ``generate`` find and read a model: sharded over the inference mesh in the sampler's layout
(the same values the whole-model host conversion gives), one-line refusals of bad checkpoints, URL-aware refusal
of an output that is an input, and the split of records between processes for verification."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tulu_jax.errors import CheckpointError, DataError
from tulu_jax.generation.cli_options import inference_mesh_and_batch
from tulu_jax.generation.loading import load_model_for_inference
from tulu_jax.generation.sampler import param_shardings
from tulu_jax.hf import load_hf_checkpoint, save_hf_checkpoint
from tulu_jax.jsonl import refuse_overwriting_inputs
from tulu_jax.models import preset


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from tests.generation.conftest import numpy_random_params

    root = tmp_path_factory.mktemp("inference_loading")
    tokenizer_dir = build_tiny_tokenizer(root / "tokenizer")
    config = preset("tiny", vocab_size=512)
    return save_hf_checkpoint(root / "model", numpy_random_params(config, seed=2), config, tokenizer_dir=tokenizer_dir)


def test_the_model_is_read_sharded_in_the_samplers_layout_with_the_host_conversions_values(checkpoint):
    mesh, batch = inference_mesh_and_batch(5)
    assert mesh is not None and batch == 8  # 8 forced CPU devices: rows rounded up to the data-parallel size
    model = load_model_for_inference(checkpoint, mesh=mesh)
    _, host = load_hf_checkpoint(checkpoint)
    expected = param_shardings(model.config, mesh)
    for (path, leaf), wanted, reference in zip(jax.tree_util.tree_leaves_with_path(model.params),
                                               jax.tree.leaves(expected), jax.tree.leaves(host)):
        assert leaf.sharding == wanted, jax.tree_util.keystr(path)  # generate() then moves nothing before sampling
        np.testing.assert_array_equal(np.asarray(leaf), reference, err_msg=jax.tree_util.keystr(path))
    one_device = load_model_for_inference(checkpoint)
    assert all(leaf.sharding.device_set == {jax.local_devices()[0]} for leaf in jax.tree.leaves(one_device.params))


def test_bad_checkpoints_are_one_line_errors_naming_them(checkpoint, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(CheckpointError, match=f"checkpoint {missing} does not exist"):
        load_model_for_inference(missing)
    with pytest.raises(CheckpointError, match="no config.json.*tulu-jax convert"):
        load_model_for_inference(checkpoint.parent / "tokenizer")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_bytes((checkpoint / "config.json").read_bytes())
    with pytest.raises(CheckpointError, match=f"{bare}: no tokenizer beside the model"):
        load_model_for_inference(bare)


def test_an_output_url_that_is_an_input_is_refused():
    with pytest.raises(DataError, match="--out gs://b/run/data.jsonl is the --data file gs://b/run/data.jsonl"):
        refuse_overwriting_inputs("gs://b/run/data.jsonl", [("--data file", "gs://b/run/data.jsonl")])
    with pytest.raises(DataError, match="lies inside the --checkpoint gs://b/model"):
        refuse_overwriting_inputs("gs://b/model/out.jsonl", [("--checkpoint", "gs://b/model/")])
    refuse_overwriting_inputs("gs://b/run/out.jsonl", [("--data file", "gs://b/run/data.jsonl"),
                                                        ("--checkpoint", "/local/model")])  # elsewhere: fine


@pytest.mark.parametrize("processes", [1, 2, 3, 5])
def test_every_record_is_verified_by_exactly_one_process(monkeypatch, processes):
    from tulu_jax import distributed
    from tulu_jax.generation.evaluate import process_share

    monkeypatch.setattr(distributed, "process_count", lambda: processes)
    shares = []
    for index in range(processes):
        monkeypatch.setattr(distributed, "process_index", lambda index=index: index)
        shares.append(list(process_share(13)))
    assert [row for share in shares for row in share] == list(range(13))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
