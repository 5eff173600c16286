"""Launch a ``tulu-jax`` command, SIGKILL it at a chosen moment, and compare what runs exported."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.tpu import launch
from tulu_jax.hf import read_checkpoint_dir


def steps_in(directory: Path) -> list[int]:
    """The checkpoint steps under ``directory`` (none when it does not exist)."""
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def start(arguments: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen([launch.TULU_JAX, *arguments], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def finish(arguments: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    """Run to the end; the run must succeed."""
    done = subprocess.run([launch.TULU_JAX, *arguments], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def kill_when(process: subprocess.Popen, condition, what: str, timeout: float) -> None:
    """SIGKILL ``process`` as soon as ``condition()`` holds; fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def assert_same_weights(ours: Path, reference: Path) -> None:
    """The safetensors of two exports hold the same tensors, byte for byte."""
    mine, theirs = read_checkpoint_dir(ours), read_checkpoint_dir(reference)
    assert sorted(mine) == sorted(theirs)
    for name in theirs:
        assert mine[name].tobytes() == theirs[name].tobytes(), name
