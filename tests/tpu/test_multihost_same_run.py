"""One run, one config: 2 processes of ``tulu-jax sft`` started with different settings, or with an output_dir
that is not one storage, stop before any data work, each with one line naming what differs, within 60 s.

Each process gets its own arguments (``launch.start`` gives all the same), 1 CPU device each.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.tpu import launch
from tests.training.sft_data import make_run_inputs, tiny_overrides

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "sft_tiny_cpu.yaml")
LIMIT_SECONDS = 60


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("same_run") / "inputs"
    make_run_inputs(directory)
    return directory


def run_pair(arguments: list[list[str]], log_dir: Path, cwds: tuple = (None, None)) -> launch.Result:
    """``tulu-jax`` with ``arguments[rank]`` on process ``rank`` of a 2-process run."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = launch.free_port()
    processes = []
    for rank, (rank_arguments, cwd) in enumerate(zip(arguments, cwds)):
        env = launch.environment(1, TULU_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", TULU_NUM_PROCESSES="2",
                                 TULU_PROCESS_ID=str(rank))
        sink = open(log_dir / f"process-{rank}.log", "w")
        processes.append(subprocess.Popen([launch.TULU_JAX, *rank_arguments], env=env, stdout=sink,
                                          stderr=subprocess.STDOUT, cwd=cwd))
    return launch.wait(processes, log_dir, timeout=LIMIT_SECONDS + 60)


def sft(inputs: Path, output_dir: Path | str, *extra: str) -> list[str]:
    return ["sft", "--config", CONFIG, *tiny_overrides(inputs, output_dir, "training.tensorboard=false", *extra)]


def error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("error:")]


def assert_refused_naming(result: launch.Result, *named: str) -> None:
    assert all(code != 0 for code in result.returncodes), result.stderr
    assert result.seconds < LIMIT_SECONDS, result.seconds
    for log in result.stderr:
        lines = error_lines(log)
        assert len(lines) == 1, log[-3000:]
        for text in named:
            assert text in lines[0], lines[0]
        assert "Traceback" not in log and "Check failure" not in log, log[-3000:]


def test_different_learning_rates_are_refused_on_every_process(inputs, tmp_path):
    output_dir = tmp_path / "run"
    result = run_pair([sft(inputs, output_dir, "optimizer.learning_rate=1e-3"),
                       sft(inputs, output_dir, "optimizer.learning_rate=2e-3")], tmp_path / "logs")
    assert_refused_naming(result, "optimizer.learning_rate", "0.001", "0.002")
    assert not (output_dir / "checkpoints").exists()


def test_different_max_steps_are_refused_on_every_process(inputs, tmp_path):
    output_dir = tmp_path / "run"
    result = run_pair([sft(inputs, output_dir, "training.max_steps=3"),
                       sft(inputs, output_dir, "training.max_steps=4")], tmp_path / "logs")
    assert_refused_naming(result, "training.max_steps", "3", "4")


def test_different_data_files_at_one_path_are_refused(tmp_path):
    """One command on both (relative input paths), but the files each host reads there differ."""
    cwds = (tmp_path / "host0", tmp_path / "host1")
    make_run_inputs(cwds[0] / "inputs", copies=4)
    make_run_inputs(cwds[1] / "inputs", copies=5)
    arguments = sft(Path("inputs"), tmp_path / "run")
    result = run_pair([arguments, arguments], tmp_path / "logs", cwds)
    assert_refused_naming(result, "data.sources[0].path (files)")


def test_an_output_dir_that_is_not_shared_storage_is_refused(inputs, tmp_path):
    """``output_dir=run`` on both, relative to a different directory on each: one name, two storages."""
    cwds = (tmp_path / "host0", tmp_path / "host1")
    for cwd in cwds:
        cwd.mkdir()
    result = run_pair([sft(inputs, "run"), sft(inputs, "run")], tmp_path / "logs", cwds)
    assert_refused_naming(result, "output_dir run must be storage every process shares", "process 1")
