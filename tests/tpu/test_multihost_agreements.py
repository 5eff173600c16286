"""Agreements by name between 2 processes launched as ``tpu_scripts/launch.sh`` launches them (issue 30, item 4).

- a refusal is agreed: a non-empty export target ends both processes at once, with the same one line;
- a missed call fails at once on both, naming both calls; a key reached twice is refused at once.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.tpu import launch
from tulu_jax.hf import read_checkpoint_dir, save_hf_checkpoint
from tulu_jax.models import init_params, preset

NATIVE_NOISE = ("Traceback", "Check failure", "Terminating process", "terminate called")


def error_lines(logs: list[str]) -> list[str]:
    lines = []
    for log in logs:
        errors = [line for line in log.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and not any(noise in log for noise in NATIVE_NOISE), log[-3000:]
        lines.append(errors[0])
    return lines


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    config = preset("tiny", vocab_size=256)
    directory = tmp_path_factory.mktemp("agreements") / "model"
    save_hf_checkpoint(directory, jax.device_get(init_params(config, jax.random.PRNGKey(0))), config)
    return directory


def test_a_conversion_on_two_processes_writes_the_source_tensors(model, tmp_path):
    result = launch.run(["convert", "--from-hf", str(model), "--to-hf", str(tmp_path / "out")], 2, 2,
                        tmp_path / "logs", timeout=300)
    assert result.returncodes == [0, 0], result.stderr
    source, written = read_checkpoint_dir(model), read_checkpoint_dir(tmp_path / "out")
    assert set(source) == set(written)
    for name, tensor in source.items():
        np.testing.assert_array_equal(written[name], tensor, err_msg=name)


def test_a_refused_export_target_ends_both_processes_with_the_same_line(model, tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("someone's work")
    result = launch.run(["convert", "--from-hf", str(model), "--to-hf", str(target)], 2, 1,
                        tmp_path / "logs", timeout=120)
    print(f"both processes ended {result.seconds:.1f} s after launch")
    assert result.returncodes == [1, 1], result.stderr
    lines = error_lines(result.stderr)
    assert lines[0] == lines[1] and "exists and is not empty" in lines[0] and "--overwrite" in lines[0], lines
    assert result.seconds < 15, result.seconds
    assert (target / "keep.txt").read_text() == "someone's work"


def run_scenario(scenario: str, tmp_path: Path) -> tuple[list[int], list[str], float]:
    port = launch.free_port()
    began = time.monotonic()
    processes = []
    for rank in range(2):
        env = launch.environment(1, TULU_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", TULU_NUM_PROCESSES="2",
                                 TULU_PROCESS_ID=str(rank))
        processes.append(subprocess.Popen([sys.executable, "-m", "tests.tpu.agreement_paths", scenario], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          cwd=Path(__file__).resolve().parents[2]))
    outputs = [process.communicate(timeout=60)[0] for process in processes]
    return [process.returncode for process in processes], outputs, time.monotonic() - began


def test_a_missed_agreement_fails_at_once_on_both_naming_both_calls(tmp_path):
    codes, logs, seconds = run_scenario("missed", tmp_path)
    assert codes == [1, 1], logs
    for line in error_lines(logs):
        assert "'weights staged' (step 3)" in line and "'export written' (step 3)" in line, line
    assert seconds < 15, seconds


def test_an_agreement_reached_twice_is_refused_at_once(tmp_path):
    codes, logs, seconds = run_scenario("twice", tmp_path)
    assert codes == [1, 1], logs
    for line in error_lines(logs):
        assert "'keep best' (step 5) was reached twice" in line, line
    assert seconds < 15, seconds
