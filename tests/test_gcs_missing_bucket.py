"""A ``gs://`` bucket that does not exist is one line naming the key and the bucket, in the stages and in
``convert`` (issue 28 finding 15); it was a FileNotFoundError traceback from gcsfs ("b/no-such-bucket/o")."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.test_gcs_emulator import bucket  # noqa: F401 - the emulator fixture
from tests.tpu import launch

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "sft_tiny_cpu.yaml")
MISSING = "gs://no-such-bucket"


@pytest.mark.parametrize("arguments, key", [
    (["convert", "--from-hf", f"{MISSING}/model", "--to-hf", "{tmp}/out"], "--from-hf"),
    (["sft", "--config", CONFIG, f"output_dir={MISSING}/run"], "output_dir"),
    (["sft", "--config", CONFIG, "output_dir={tmp}/run", f"model.source={MISSING}/model", "model.overrides={}"],
     "model.source"),
])
def test_a_missing_bucket_is_one_line_naming_the_key(bucket, tmp_path, arguments, key):
    arguments = [argument.replace("{tmp}", str(tmp_path)) for argument in arguments]
    done = subprocess.run([launch.TULU_JAX, *arguments], env={**launch.environment(1), **bucket},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert errors[0].startswith(f"error: {key} {MISSING}/") and f"the bucket {MISSING} does not exist" in errors[0]
