"""Hugging Face checkpoints that cannot be read faithfully are refused in one line (issue 28 findings 2, 3, 15).

- a tied checkpoint (``tie_word_embeddings: true``) that stores a different ``lm_head`` was loaded with the head
  silently dropped (transformers keeps it: logits 28.6 apart);
- ``convert --from-hf`` wrote a mixed-dtype checkpoint all in the embedding's dtype and float16 as float32,
  although ``--dtype`` defaults to "as stored";
- a damaged ``config.json`` (missing or string ``hidden_size``, a string or partial llama3 ``rope_scaling``) and a
  checkpoint without its embedding were KeyError/TypeError/AttributeError tracebacks.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jax
import ml_dtypes
import numpy as np
import pytest

from tests.tpu import launch
from tulu_jax.errors import CheckpointError, ConfigError
from tulu_jax.hf import read_checkpoint_dir, read_hf_config, save_hf_checkpoint
from tulu_jax.hf.convert import load_hf_checkpoint
from tulu_jax.hf.safetensors_io import write_checkpoint_dir
from tulu_jax.models import init_params, preset


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("hf_inputs") / "base"
    config = preset("tiny", vocab_size=512)
    save_hf_checkpoint(directory, jax.device_get(init_params(config, jax.random.PRNGKey(0))), config)
    return directory


def variant(checkpoint: Path, directory: Path, edit_config=None, edit_tensors=None) -> Path:
    """A copy of ``checkpoint`` with its config.json and/or tensors edited."""
    settings = json.loads((checkpoint / "config.json").read_text())
    tensors = read_checkpoint_dir(checkpoint)
    if edit_config:
        edit_config(settings)
    if edit_tensors:
        edit_tensors(tensors)
    write_checkpoint_dir(directory, tensors)
    (directory / "config.json").write_text(json.dumps(settings))
    return directory


def convert(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([launch.TULU_JAX, "convert", "--from-hf", str(source), "--to-hf", str(out), *extra],
                          env=launch.environment(1), capture_output=True, text=True, timeout=300)


def assert_one_line_error(done: subprocess.CompletedProcess, *named: str) -> None:
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    for text in named:
        assert text in errors[0], errors[0]


def tie_with_a_different_head(settings):
    settings["tie_word_embeddings"] = True


def test_a_tied_checkpoint_storing_a_different_head_is_refused(checkpoint, tmp_path):
    def keep_a_different_head(tensors):
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"] + 1.0

    source = variant(checkpoint, tmp_path / "tied", tie_with_a_different_head, keep_a_different_head)
    with pytest.raises(CheckpointError, match="tie_word_embeddings: true.*differs"):
        load_hf_checkpoint(source)
    assert_one_line_error(convert(source, tmp_path / "out"), "lm_head.weight", "tie_word_embeddings")


def test_a_tied_checkpoint_storing_a_copy_of_the_embedding_loads(checkpoint, tmp_path):
    def keep_a_copy(tensors):
        tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].copy()

    config, params = load_hf_checkpoint(variant(checkpoint, tmp_path / "tied", tie_with_a_different_head, keep_a_copy))
    assert config.tie_word_embeddings and "lm_head" not in params


def test_a_mixed_dtype_checkpoint_needs_a_dtype_and_keeps_its_values_in_float32(checkpoint, tmp_path):
    def embedding_in_bf16(tensors):
        tensors["model.embed_tokens.weight"] = tensors["model.embed_tokens.weight"].astype(ml_dtypes.bfloat16)

    source = variant(checkpoint, tmp_path / "mixed", edit_tensors=embedding_in_bf16)
    assert_one_line_error(convert(source, tmp_path / "refused"), "several dtypes", "--dtype float32")
    done = convert(source, tmp_path / "float32", "--dtype", "float32")
    assert done.returncode == 0, done.stderr[-3000:]
    stored, written = read_checkpoint_dir(source), read_checkpoint_dir(tmp_path / "float32")
    for name, tensor in stored.items():
        assert written[name].dtype == np.float32
        np.testing.assert_array_equal(written[name], tensor.astype(np.float32), err_msg=name)


def test_a_float16_checkpoint_needs_a_dtype(checkpoint, tmp_path):
    def all_float16(tensors):
        for name in tensors:
            tensors[name] = tensors[name].astype(np.float16)

    source = variant(checkpoint, tmp_path / "half", edit_tensors=all_float16)
    assert_one_line_error(convert(source, tmp_path / "refused"), "float16", "--dtype")


def rope_scaling(settings: dict, value) -> None:
    """A transformers 4.x config (``rope_scaling``, no ``rope_parameters``) with ``value`` there."""
    settings.pop("rope_parameters", None)
    settings["rope_scaling"] = value


@pytest.mark.parametrize("damage, named", [
    (lambda s: s.pop("hidden_size"), "hidden_size is missing"),
    (lambda s: s.update(hidden_size="64"), "hidden_size must be a positive integer"),
    (lambda s: rope_scaling(s, "llama3"), "rope_scaling must be a mapping"),
    (lambda s: rope_scaling(s, {"rope_type": "llama3", "factor": 8.0}), "llama3 rope scaling lacks"),
])
def test_a_damaged_config_json_is_a_config_error_naming_the_key(checkpoint, tmp_path, damage, named):
    with pytest.raises(ConfigError, match=named):
        read_hf_config(variant(checkpoint, tmp_path / "damaged", damage))


def test_convert_refuses_a_damaged_config_and_a_missing_embedding_in_one_line(checkpoint, tmp_path):
    damaged = variant(checkpoint, tmp_path / "damaged", lambda s: s.pop("hidden_size"))
    assert_one_line_error(convert(damaged, tmp_path / "out1"), "hidden_size is missing")
    headless = variant(checkpoint, tmp_path / "headless", edit_tensors=lambda t: t.pop("model.embed_tokens.weight"))
    assert_one_line_error(convert(headless, tmp_path / "out2"), "model.embed_tokens.weight")
