"""Our Llama against transformers' on random tiny checkpoints built here: logits, export, and round trip."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from tests.models.hf_reference import save_random_hf_llama
from tulu_jax.errors import CheckpointError, ConfigError
from tulu_jax.hf import load_hf_checkpoint, read_checkpoint_dir, save_hf_checkpoint, write_safetensors
from tulu_jax.models import Llama

# Longer than the rope scaling's original context (16), so the llama3 frequency blend is exercised.
TOKENS = np.random.RandomState(0).randint(2, 96, size=(2, 48))


def reference_logits(model, tokens=TOKENS):
    with torch.no_grad():
        return model(torch.tensor(tokens)).logits.numpy()


def our_logits(config, params, tokens=TOKENS):
    return np.asarray(Llama(config).apply({"params": jax.tree.map(jnp.asarray, params)}, jnp.asarray(tokens)))


@pytest.fixture(scope="module", params=[False, True], ids=["untied", "tied"])
def hf_checkpoint(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("hf")
    model = save_random_hf_llama(directory, tie_word_embeddings=request.param)
    return directory, model


@pytest.mark.parametrize("scan_layers", [True, False], ids=["scan", "unrolled"])
def test_converted_logits_match_transformers(hf_checkpoint, scan_layers):
    directory, model = hf_checkpoint
    config, params = load_hf_checkpoint(directory, scan_layers=scan_layers)
    assert config.rope_scaling.original_max_position_embeddings == 16 < TOKENS.shape[1]
    np.testing.assert_allclose(our_logits(config, params), reference_logits(model), atol=1e-4, rtol=0)


def test_export_reloads_in_transformers_and_round_trips_bit_exactly(hf_checkpoint, tmp_path):
    directory, model = hf_checkpoint
    config, params = load_hf_checkpoint(directory)
    exported = save_hf_checkpoint(tmp_path / "export", params, config)
    reloaded = transformers.LlamaForCausalLM.from_pretrained(exported).float().eval()
    np.testing.assert_allclose(reference_logits(reloaded), reference_logits(model), atol=1e-4, rtol=0)
    original, written = read_checkpoint_dir(directory), read_checkpoint_dir(exported)
    assert set(original) == set(written)
    for name in original:
        assert original[name].dtype == written[name].dtype
        assert original[name].tobytes() == written[name].tobytes(), name


def test_sharded_export_writes_an_index_transformers_reads(hf_checkpoint, tmp_path):
    directory, model = hf_checkpoint
    config, params = load_hf_checkpoint(directory)
    exported = save_hf_checkpoint(tmp_path / "sharded", params, config, max_shard_bytes=40_000)
    index = json.loads((exported / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    reloaded = transformers.LlamaForCausalLM.from_pretrained(exported).float().eval()
    np.testing.assert_allclose(reference_logits(reloaded), reference_logits(model), atol=1e-4, rtol=0)
    _, params_again = load_hf_checkpoint(exported)
    np.testing.assert_array_equal(params_again["layers"]["mlp"]["up_proj"]["kernel"], params["layers"]["mlp"]["up_proj"]["kernel"])


def test_bfloat16_export_loads(hf_checkpoint, tmp_path):
    directory, _ = hf_checkpoint
    config, params = load_hf_checkpoint(directory)
    exported = save_hf_checkpoint(tmp_path / "bf16", params, config, dtype="bfloat16")
    reloaded = transformers.LlamaForCausalLM.from_pretrained(exported)
    assert next(reloaded.parameters()).dtype == torch.bfloat16
    _, params_bf16 = load_hf_checkpoint(exported, param_dtype="bfloat16")
    assert params_bf16["embed_tokens"]["embedding"].dtype == jnp.bfloat16


def test_missing_tensor_is_named(hf_checkpoint, tmp_path):
    directory, _ = hf_checkpoint
    tensors = read_checkpoint_dir(directory)
    del tensors["model.layers.1.mlp.up_proj.weight"]
    broken = tmp_path / "broken"
    broken.mkdir()
    write_safetensors(broken / "model.safetensors", tensors)
    (broken / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(CheckpointError, match=r"model\.layers\.1\.mlp\.up_proj\.weight"):
        load_hf_checkpoint(broken)


def test_non_llama_architecture_is_refused(hf_checkpoint, tmp_path):
    directory, _ = hf_checkpoint
    config = json.loads((directory / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="only Llama"):
        load_hf_checkpoint(tmp_path)


def test_directory_without_weights_or_with_pickles_is_refused(tmp_path, hf_checkpoint):
    directory, _ = hf_checkpoint
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_hf_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match="pickle"):
        load_hf_checkpoint(tmp_path)
