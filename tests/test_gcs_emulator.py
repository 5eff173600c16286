"""``gs://`` locations end to end, against a local GCS emulator: ``tulu-jax sft`` reads its data and tokenizer
from a bucket and writes its checkpoints (Orbax, tensorstore), metrics and export there, ``tulu-jax convert``
reads that checkpoint back from the bucket, and both exports equal those of the same run on local paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import gcs_emulator
from tests.helpers.killed_runs import assert_same_weights, finish, kill_when, start
from tests.helpers.pause_points import pause_environment
from tests.tpu import launch
from tests.training.sft_data import make_run_inputs
from tulu_jax.hf import read_checkpoint_dir

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "sft_tiny_cpu.yaml")
TIMEOUT = 300


def sft(root: str) -> list[str]:
    return ["sft", "--config", CONFIG, f"output_dir={root}/sft", f"data.sources=[{{path: '{root}/inputs/train.jsonl'}}]",
            f"data.tokenizer={root}/inputs/tokenizer", "training.max_steps=2", "training.micro_batches=1",
            "checkpoint.save_every=0", "training.tensorboard=false"]


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """The emulator's environment, set in this process too (epath caches its gcsfs filesystem: dropped here
    before and after, so no other test keeps one that points at the emulator)."""
    import gcsfs
    from etils.epath import backend

    with gcs_emulator.running(launch.free_port(), tmp_path / "emulator.log") as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        backend.fsspec_backend._get_filesystem.cache_clear()
        gcsfs.GCSFileSystem.clear_instance_cache()
        yield env
    backend.fsspec_backend._get_filesystem.cache_clear()
    gcsfs.GCSFileSystem.clear_instance_cache()


def inputs_here_and_in_the_bucket(local: Path, url: str) -> None:
    """The SFT inputs under ``local/inputs`` and the same files under ``url/inputs``."""
    from data_pipeline.paths import as_path

    make_run_inputs(local / "inputs")
    for file in ["train.jsonl", "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json"]:
        as_path(f"{url}/inputs/{file}").write_bytes((local / "inputs" / file).read_bytes())


def download(url: str, directory: Path) -> Path:
    from data_pipeline.paths import as_path

    directory.mkdir(parents=True)
    for file in as_path(url).iterdir():
        (directory / file.name).write_bytes(file.read_bytes())
    return directory


def test_sft_and_convert_on_gs_urls_export_what_local_paths_do(bucket, tmp_path):
    from data_pipeline.paths import as_path
    from tulu_jax.reference_cache import weights_identity

    local, gs = tmp_path / "local", f"gs://{gcs_emulator.BUCKET}/run"
    inputs_here_and_in_the_bucket(local, gs)
    env = {**launch.environment(1), **bucket}

    finish(sft(gs), env, TIMEOUT)
    finish(sft(str(local)), env, TIMEOUT)
    finish(["convert", "--checkpoint", f"{gs}/sft", "--to-hf", f"{gs}/converted"], env, TIMEOUT)

    assert as_path(f"{gs}/sft/metrics.jsonl").read_text().count('"step": 2') == 1
    assert {name for name, *_ in weights_identity(f"{gs}/sft/hf")["files"]} >= {"config.json", "model.safetensors"}
    reference = read_checkpoint_dir(local / "sft" / "hf")
    for export in ["sft/hf", "converted"]:
        ours = read_checkpoint_dir(download(f"{gs}/{export}", tmp_path / "downloaded" / export))
        assert sorted(ours) == sorted(reference)
        for name in reference:
            np.testing.assert_array_equal(ours[name], reference[name], err_msg=f"{export}: {name}")
    assert not (Path.cwd() / "gs:").exists()


def test_metrics_on_gs_are_uploaded_whole_before_each_checkpoint_and_at_close(bucket):
    """An object cannot be appended to: the file is uploaded whole, on ``sync`` (the loop's call before a
    checkpoint save, so a resume finds the lines of the saved steps) and at close, not on every line."""
    from data_pipeline.paths import as_path
    from tulu_jax.training.metrics import MetricsLogger

    output_dir = f"gs://{gcs_emulator.BUCKET}/metrics"
    logger = MetricsLogger(output_dir, tensorboard=False)
    stored = as_path(f"{output_dir}/metrics.jsonl")
    logger.log(1, {"loss": 1.0}, echo=False)
    assert '"step": 1' not in stored.read_text()  # within REMOTE_UPLOAD_SECONDS of the first upload
    logger.sync()
    assert stored.read_text().count('"step": 1') == 1
    logger.log(2, {"loss": 2.0}, echo=False)
    logger.close()
    assert [line.count('"step"') for line in stored.read_text().splitlines()] == [0, 1, 1]


@pytest.mark.slow
def test_a_killed_sft_on_gs_resumes_to_the_uninterrupted_local_export(bucket, tmp_path):
    """SIGKILL ``tulu-jax sft`` while it saves its second checkpoint (held there by a pause point after the
    fingerprints of step 4, the first on the bucket whole); the same command resumes from gs:// (Orbax restore
    through tensorstore, metrics rewound on the object store) and exports the local run's bytes."""
    from data_pipeline.paths import as_path

    local, gs = tmp_path / "local", f"gs://{gcs_emulator.BUCKET}/killed"
    inputs_here_and_in_the_bucket(local, gs)
    env = {**launch.environment(1), **bucket}
    longer = ["training.max_steps=8", "training.epochs=20", "checkpoint.save_every=2", "checkpoint.async_save=false"]

    finish(sft(str(local)) + longer, env, TIMEOUT)
    paused_env, marker = pause_environment(tmp_path / "pause", "tulu_jax.checkpoint_fingerprint.fingerprints", env,
                                           calls=2)
    process = start(sft(gs) + longer, paused_env, tmp_path / "killed.log")
    kill_when(process, marker.exists, "the second checkpoint save", TIMEOUT)
    assert not as_path(f"{gs}/sft/hf").exists()
    rerun = finish(sft(gs) + longer, env, TIMEOUT)
    assert f"resumed from {gs}/sft/checkpoints/2" in rerun.stderr

    assert_same_weights(download(f"{gs}/sft/hf", tmp_path / "downloaded"), local / "sft" / "hf")
    steps = [line for line in as_path(f"{gs}/sft/metrics.jsonl").read_text().splitlines() if '"step"' in line]
    assert len(steps) == len({line.split(",")[0] for line in steps})  # each logged step once
