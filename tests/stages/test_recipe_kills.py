"""``make run`` killed during RLVR, and again during RLVR's export, then rerun: the same table, the same bytes.

The command is `make run`'s (`tulu-jax recipe --config configs/demo_cpu.yaml`, its own process, one CPU
device), with only ``output_dir`` moved. One uninterrupted run is the reference. The interrupted run starts
from a copy of the reference's finished SFT and DPO stages (``recipe.json`` says they are done, as it would
after a kill in RLVR), so only RLVR runs three times:

1. SIGKILLed at a rollout step after keep-best has chosen a trained policy (a step under ``rlvr/best``
   above 0, and a later checkpoint saved);
2. SIGKILLed during the export, after the shards are written to the temporary sibling
   (``tests/helpers/pause_points``);
3. run to the end.

The printed accuracy table (wall times aside) and the exported weights must equal the reference's. About
6 minutes on 2 cores, so ``slow``; ``tests/guards/test_rlvr_kill_resume.py`` is the quick version.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.killed_runs import assert_same_weights, kill_when, steps_in
from tests.helpers.pause_points import pause_environment

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 3600


def command(output_dir: Path) -> list[str]:
    return [sys.executable, "-m", "tulu_jax.cli", "recipe", "--config", "configs/demo_cpu.yaml",
            f"output_dir={output_dir}"]


def environment() -> dict:
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    return env


def run_until(output_dir: Path, env: dict, log: Path, condition, what: str) -> None:
    process = subprocess.Popen(command(output_dir), env=env, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    kill_when(process, condition, what, TIMEOUT)


def table(stdout: str) -> list[str]:
    """The accuracy table's rows without the wall-time column."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("stage "))
    rows = lines[start : start + 6]
    return [line.rsplit("  ", 1)[0].rstrip() if line.rstrip().endswith(" s") else line.rstrip() for line in rows]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe_kills")
    env = environment()
    reference = root / "reference"
    done = subprocess.run(command(reference), env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = root / "killed"
    killed.mkdir()
    for part in ("data", "sft", "dpo"):
        shutil.copytree(reference / part, killed / part)
    state = json.loads((reference / "recipe.json").read_text())
    state["done"].pop("rlvr")
    state["evals"].pop("rlvr")
    (killed / "recipe.json").write_text(json.dumps(state, indent=2) + "\n")

    rlvr = killed / "rlvr"

    def past_a_chosen_trained_policy() -> bool:
        best, saved = steps_in(rlvr / "best"), steps_in(rlvr / "checkpoints")
        return bool(best) and best[-1] > 0 and bool(saved) and saved[-1] > best[-1]

    run_until(killed, env, root / "first.log", past_a_chosen_trained_policy, "keep-best chose a trained policy")
    first = {"best": steps_in(rlvr / "best"), "checkpoints": steps_in(rlvr / "checkpoints")}
    paused_env, marker = pause_environment(root / "pause", "tulu_jax.hf.streamed_export._write_shards", env)
    run_until(killed, paused_env, root / "second.log", marker.exists, "the RLVR export wrote its shards")
    half_written = [p.name for p in rlvr.iterdir() if p.name.startswith(".hf.tmp-")]
    rerun = subprocess.run(command(killed), env=env, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return {"reference": reference, "killed": killed, "first": first, "half_written": half_written,
            "stdout": (done.stdout, rerun.stdout), "second_log": (root / "second.log").read_text(),
            "rerun_log": rerun.stderr}


@pytest.mark.slow
def test_the_kills_landed_after_keep_best_chose_and_during_the_export(runs):
    assert runs["first"]["best"][-1] > 0 and runs["first"]["checkpoints"][-1] > runs["first"]["best"][-1]
    assert runs["half_written"]
    assert "resumed from" in runs["second_log"] and "resumed from" in runs["rerun_log"]


@pytest.mark.slow
def test_the_rerun_prints_the_same_table(runs):
    reference, rerun = runs["stdout"]
    assert table(rerun) == table(reference)
    ours, theirs = (json.loads((run / "recipe.json").read_text())["evals"] for run in (runs["killed"], runs["reference"]))
    assert ours == theirs


@pytest.mark.slow
def test_the_rerun_exports_the_same_policy_bit_for_bit(runs):
    killed, reference = runs["killed"] / "rlvr", runs["reference"] / "rlvr"
    assert steps_in(killed / "best") == steps_in(reference / "best")
    assert_same_weights(killed / "hf", reference / "hf")
