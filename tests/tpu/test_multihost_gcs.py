"""The pod setup the README describes: ``tulu-jax sft``, then ``tulu-jax dpo`` from its output, as 2 processes x 2
CPU devices with every location on ``gs://`` (the local GCS emulator), export what the 1-process 4-device runs
on local paths export (1e-6). The data exchange and the shared-storage check run through the bucket.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import gcs_emulator
from tests.stages.preference_fixtures import write_pairs
from tests.test_gcs_emulator import bucket, download  # noqa: F401 - the emulator fixture
from tests.tpu import launch
from tests.training.sft_data import make_run_inputs
from tulu_jax.hf import read_checkpoint_dir

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TIMEOUT = 600
MESH = ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=1"]


def sft(root: str) -> list[str]:
    return ["sft", "--config", str(CONFIGS / "sft_tiny_cpu.yaml"), f"output_dir={root}/sft",
            f"data.sources=[{{path: '{root}/inputs/train.jsonl'}}]", f"data.tokenizer={root}/inputs/tokenizer",
            "training.max_steps=2", "training.micro_batches=1", "checkpoint.save_every=0",
            "training.tensorboard=false", *MESH]


def dpo(root: str) -> list[str]:
    return ["dpo", "--config", str(CONFIGS / "dpo_tiny_cpu.yaml"), f"output_dir={root}/dpo",
            f"model.source={root}/sft", "model.overrides={}", f"data.sources=[{{path: '{root}/inputs/pairs.jsonl'}}]",
            f"data.tokenizer={root}/inputs/tokenizer", "data.max_seq_len=48", "data.eval_fraction=0",
            "training.max_steps=2", "checkpoint.save_every=0", "training.tensorboard=false", *MESH]


def place_inputs(local: Path, url: str) -> None:
    from data_pipeline.paths import as_path

    make_run_inputs(local / "inputs")
    write_pairs(local / "inputs" / "pairs.jsonl", 40)
    for file in ["train.jsonl", "pairs.jsonl", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"]:
        as_path(f"{url}/inputs/{file}").write_bytes((local / "inputs" / file).read_bytes())


def run(arguments: list[str], processes: int, devices: int, logs: Path) -> None:
    """The emulator's environment is this process's (the ``bucket`` fixture), which the launch passes on."""
    result = launch.run(arguments, processes, devices, logs, timeout=TIMEOUT)
    assert result.returncodes == [0] * processes, "\n\n".join(log[-3000:] for log in result.stderr)


@pytest.mark.slow
def test_sft_then_dpo_on_gs_as_two_processes_export_what_one_local_process_does(bucket, tmp_path):
    local, gs = tmp_path / "local", f"gs://{gcs_emulator.BUCKET}/pod"
    place_inputs(local, gs)
    for stage in (sft, dpo):
        run(stage(str(local)), 1, 4, tmp_path / "logs" / f"{stage.__name__}-local")
        run(stage(gs), 2, 2, tmp_path / "logs" / f"{stage.__name__}-gs")
        reference = read_checkpoint_dir(local / stage.__name__ / "hf")
        ours = read_checkpoint_dir(download(f"{gs}/{stage.__name__}/hf", tmp_path / "downloaded" / stage.__name__))
        assert sorted(ours) == sorted(reference)
        for name in reference:
            np.testing.assert_allclose(ours[name], reference[name], atol=1e-6, rtol=0, err_msg=f"{stage.__name__}: {name}")
    from data_pipeline.paths import as_path

    leftovers = [path.name for path in as_path(f"{gs}/sft").iterdir() if path.name.startswith(".")]
    assert leftovers == []  # no data exchange or shared-storage token left behind
