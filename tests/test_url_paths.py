"""Stages and ``convert`` take their locations as URLs: ``file://`` here (``gs://`` goes the same way, through
``etils.epath``), and nothing creates a local folder named after the scheme."""

from pathlib import Path

import numpy as np

from tests.stages.preference_fixtures import write_pairs
from tests.training.sft_data import make_run_inputs
from tulu_jax.cli import main
from tulu_jax.hf import read_checkpoint_dir

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_sft_dpo_and_convert_read_and_write_file_urls(tmp_path, monkeypatch):
    data, tokenizer = make_run_inputs(tmp_path / "inputs")
    pairs = write_pairs(tmp_path / "inputs" / "pairs.jsonl", 48)
    monkeypatch.chdir(tmp_path)
    url = f"file://{tmp_path}"
    assert main(["sft", "--config", str(CONFIGS / "sft_tiny_cpu.yaml"), f"output_dir={url}/sft",
                 f"data.sources=[{{path: '{url}/inputs/train.jsonl'}}]", f"data.tokenizer={url}/inputs/tokenizer",
                 "training.max_steps=2", "training.micro_batches=1", "checkpoint.save_every=0",
                 "training.tensorboard=false"]) == 0
    assert (tmp_path / "sft" / "hf" / "model.safetensors").is_file()
    assert main(["dpo", "--config", str(CONFIGS / "dpo_tiny_cpu.yaml"), f"output_dir={url}/dpo",
                 f"model.source={url}/sft", "model.overrides={}", f"data.sources=[{{path: '{url}/inputs/pairs.jsonl'}}]",
                 f"data.tokenizer={url}/inputs/tokenizer", "data.max_seq_len=48", "dpo.reference_cache_dir=''",
                 "training.max_steps=2", "training.micro_batches=1", "checkpoint.save_every=0"]) == 0
    assert list((tmp_path / "dpo" / "reference_logps").glob("*.npz"))
    assert main(["convert", "--checkpoint", f"{url}/dpo", "--to-hf", f"{url}/converted"]) == 0
    ours, stage = read_checkpoint_dir(tmp_path / "converted"), read_checkpoint_dir(tmp_path / "dpo" / "hf")
    for name in stage:
        np.testing.assert_array_equal(ours[name], stage[name])
    assert main(["convert", "--from-hf", f"{url}/converted", "--to-hf", f"{url}/converted"]) == 1
    assert main(["convert", "--from-hf", f"{url}/converted", "--to-hf", f"{url}/dpo/hf"]) == 1  # not empty
    assert main(["convert", "--from-hf", f"{url}/converted", "--to-hf", f"{url}/dpo/hf", "--overwrite"]) == 0
    assert not [path.name for path in tmp_path.iterdir() if path.name.endswith(":")]
    assert data.exists() and tokenizer.exists() and pairs.exists()


def test_gs_urls_stay_urls_and_file_urls_become_local_paths():
    from data_pipeline.paths import as_path, is_remote

    bucket = as_path("gs://bucket/runs/sft")
    assert str(bucket / "hf" / "model.safetensors") == "gs://bucket/runs/sft/hf/model.safetensors"
    assert is_remote(bucket) and not is_remote("file:///tmp/run") and not is_remote("runs/sft")
    assert str(as_path("file:///tmp/run")) == "/tmp/run"
