"""A stage refuses an output_dir that holds its own inputs where it writes (export, checkpoints, logs)."""

from __future__ import annotations

import re

import jax
import pytest

from tests.training.sft_data import make_run_inputs, tiny_overrides
from tulu_jax.cli import main
from tulu_jax.config import load_config
from tulu_jax.errors import ConfigError
from tulu_jax.hf import save_hf_checkpoint
from tulu_jax.models import init_params, preset
from tulu_jax.stages.dpo import DPOConfig
from tulu_jax.stages.output_dir import check_inputs_outside_outputs


@pytest.mark.parametrize("source", ["{out}", "{out}/hf", "file://{out}/hf/"])
def test_sft_refuses_to_start_from_the_model_it_would_overwrite(tmp_path, capsys, source):
    """The old behaviour: trained from ``out/hf`` and then replaced it with the export."""
    make_run_inputs(tmp_path / "inputs")
    out = tmp_path / "run"
    config = preset("tiny", vocab_size=512, scan_layers=False)
    save_hf_checkpoint(out / "hf", jax.device_get(init_params(config, jax.random.PRNGKey(0))), config)
    before = {path.name: path.read_bytes() for path in (out / "hf").iterdir()}
    overrides = tiny_overrides(tmp_path / "inputs", out, f"model.source={source.format(out=out)}",
                               "model.overrides={}", "training.max_steps=1", "training.batch_size=8",
                               "training.micro_batches=1")
    assert main(["sft", "--config", "configs/sft_tiny_cpu.yaml", *overrides]) == 1
    error = capsys.readouterr().err
    assert "model.source" in error and "Choose another output_dir" in error
    assert {path.name: path.read_bytes() for path in (out / "hf").iterdir()} == before
    assert not (out / "checkpoints").exists()


def test_inputs_elsewhere_under_output_dir_are_fine_and_written_entries_are_not(tmp_path):
    data = tmp_path / "data" / "pairs.jsonl"
    config = load_config(DPOConfig, "configs/dpo_tiny_cpu.yaml", [
        f"output_dir={tmp_path}", f"data.sources=[{{path: {data}}}]", f"data.tokenizer={tmp_path / 'tokenizer'}"])
    check_inputs_outside_outputs(config)  # data and tokenizer beside the outputs, not in them
    for key, value in [("data.tokenizer", tmp_path / "hf"), ("data.sources[0].path", tmp_path / "checkpoints" / "x"),
                       ("model.source", tmp_path)]:
        override = f"data.sources=[{{path: {value}}}]" if key.startswith("data.sources") else f"{key}={value}"
        bad = load_config(DPOConfig, "configs/dpo_tiny_cpu.yaml", [f"output_dir={tmp_path}", override])
        with pytest.raises(ConfigError, match=re.escape(key) + " .* lies in output_dir"):
            check_inputs_outside_outputs(bad)

