"""``tulu-jax convert``: a HF directory re-written, and a stage checkpoint exported, both loadable by transformers."""

import numpy as np
import pytest
import torch
import transformers

from tests.models.hf_reference import save_random_hf_llama
from tests.training.sft_data import make_run_inputs, tiny_overrides
from tulu_jax.cli import main
from tulu_jax.config import load_config
from tulu_jax.hf import read_checkpoint_dir
from tulu_jax.stages.sft import SFTConfig, run_sft


def test_from_hf_to_bfloat16_shards_loads_in_transformers(tmp_path, capsys):
    model = save_random_hf_llama(tmp_path / "source")
    assert main(["convert", "--from-hf", str(tmp_path / "source"), "--to-hf", str(tmp_path / "out"),
                 "--dtype", "bfloat16", "--max-shard-gb", "0.00004"]) == 0
    assert (tmp_path / "out" / "model.safetensors.index.json").is_file()
    reloaded = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "out")
    assert next(reloaded.parameters()).dtype == torch.bfloat16
    tokens = torch.arange(2, 30)[None]
    with torch.no_grad():
        expected = model(tokens).logits
        got = reloaded.float()(tokens).logits
    assert float((expected - got).abs().max()) < 0.1  # bfloat16 rounding of the weights only
    assert "wrote" in capsys.readouterr().out


def test_stage_checkpoint_exports_the_same_weights_as_the_stage(tmp_path):
    make_run_inputs(tmp_path / "inputs")
    config = load_config(
        SFTConfig, "configs/sft_tiny_cpu.yaml",
        tiny_overrides(tmp_path / "inputs", tmp_path / "run", "training.max_steps=2", "checkpoint.save_every=0",
                       "training.tensorboard=false", "training.micro_batches=1"),
    )
    stage_export = run_sft(config).export_dir
    assert main(["convert", "--checkpoint", str(tmp_path / "run"), "--to-hf", str(tmp_path / "converted")]) == 0
    ours, stage = read_checkpoint_dir(tmp_path / "converted"), read_checkpoint_dir(stage_export)
    assert set(ours) == set(stage)
    for name in stage:
        np.testing.assert_array_equal(ours[name], stage[name])
    assert (tmp_path / "converted" / "tokenizer.json").is_file()
    transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "converted")


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["convert", "--checkpoint", str(tmp_path / "nothing"), "--to-hf", str(tmp_path / "out")]) == 1
    assert "no checkpoint directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["convert", "--to-hf", str(tmp_path / "out")])


@pytest.mark.parametrize("layout", ["same", "parent"])
def test_to_hf_that_is_or_holds_the_source_is_refused_even_with_overwrite(tmp_path, capsys, layout):
    """``--to-hf`` replaces its directory whole; with ``parent`` the old code deleted the source it had read."""
    source = tmp_path / "out" / "model"
    save_random_hf_llama(source)
    before = {path.name: path.read_bytes() for path in source.iterdir()}
    target = source if layout == "same" else tmp_path / "out"
    assert main(["convert", "--from-hf", str(source), "--to-hf", str(target), "--overwrite"]) == 1
    assert "it reads; writing it would destroy the input" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in source.iterdir()} == before
