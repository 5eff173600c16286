"""A run killed with SIGKILL and resumed ends with exactly the params and batches of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.training.sft_data import make_run_inputs, tiny_overrides
from tulu_jax.hf import read_checkpoint_dir

ROOT = Path(__file__).resolve().parents[2]
STEPS = 20


def cli(inputs: Path, output_dir: Path, cache: Path, *extra: str) -> list[str]:
    overrides = tiny_overrides(inputs, output_dir, f"training.max_steps={STEPS}", "training.epochs=30",
                               "training.record_batches=true", "checkpoint.save_every=4", *extra)
    return [sys.executable, "-m", "tulu_jax.cli", "sft", "--config", str(ROOT / "configs/sft_tiny_cpu.yaml"), *overrides]


def environment(cache: Path) -> dict:
    env = dict(os.environ)
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", PYTHONPATH=str(ROOT))
    return env


def committed_steps(output_dir: Path) -> list[int]:
    directory = output_dir / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def batches_by_step(output_dir: Path) -> dict[int, int]:
    """The fingerprint of the batch each step finally trained on (a replayed step overwrites its first try)."""
    lines = [json.loads(line) for line in (output_dir / "batches.jsonl").read_text().splitlines() if line.strip()]
    return {line["step"]: line["fingerprint"] for line in lines}


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, compilation_cache):
    inputs = tmp_path / "inputs"
    make_run_inputs(inputs)
    env = environment(compilation_cache)

    straight = tmp_path / "straight"
    subprocess.run(cli(inputs, straight, compilation_cache), env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(cli(inputs, interrupted, compilation_cache), env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if any(step >= 8 for step in committed_steps(interrupted)):
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = committed_steps(interrupted)
    assert killed_at and max(killed_at) < STEPS, f"the run was not killed mid-way: checkpoints {killed_at}"

    resumed = subprocess.run(cli(inputs, interrupted, compilation_cache),
                             env=env, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr

    assert batches_by_step(interrupted) == batches_by_step(straight)
    assert sorted(batches_by_step(straight)) == list(range(1, STEPS + 1))
    ours, reference = read_checkpoint_dir(interrupted / "hf"), read_checkpoint_dir(straight / "hf")
    assert sorted(ours) == sorted(reference)
    for name in reference:
        np.testing.assert_array_equal(ours[name], reference[name], err_msg=name)
