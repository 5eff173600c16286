"""``tulu-jax rlvr`` (PPO and GRPO) on 2 processes × 4 CPU devices equals the 1-process 8-device run.

Launched as ``tpu_scripts/launch.sh`` launches a pod (``tests/tpu/launch.py``): the same command on each
process, only the ``TULU_*`` environment differing, one shared ``output_dir``, the policy a Hugging Face
checkpoint. Each process decodes and scores only the rollout rows its devices hold. Checked: per-step
rewards, KL and losses (1e-5), the exports (1e-6), keep-best's checkpoint step, and that no process gathered
a whole array (``assert_equal``/``process_allgather``). A 2-process PPO run SIGKILLed after its first
checkpoint and rerun ends with an export bit-identical to the uninterrupted run (``slow``).
"""

import json

import numpy as np
import pytest

from tests.helpers.killed_runs import assert_same_weights
from tests.helpers.rlvr_inputs import rlvr_input_arguments
from tests.tpu import launch
from tulu_jax.hf import read_checkpoint_dir

TIMEOUT = 1200
MESH = ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]
COMPARED = ("reward", "accuracy", "kl", "train/loss", "train/policy_loss")
PPO = ["evaluation.keep_best=false"]  # the export is the trained policy
GRPO = ["objective.advantage_estimator=grpo", "objective.policy_loss=grpo", "objective.group_size=4",
        "objective.kl_beta=0.01", "rollout.prompts_per_step=2", "rollout.samples_per_prompt=4"]


def rlvr_arguments(workspace, output_dir, *extra):
    return ["rlvr", "--config", "configs/rlvr_tiny_cpu.yaml", f"output_dir={output_dir}",
            *rlvr_input_arguments(workspace), "data.max_prompt_len=32", "rollout.prompts_per_step=8",
            "rollout.max_new_tokens=4", "evaluation.every=2", "evaluation.batch_size=8", "evaluation.max_new_tokens=4",
            "evaluation.keep_best=true", "ppo.epochs=2", "ppo.logprob_chunk=8", "optimizer.learning_rate=3e-3", "training.steps=4",
            "training.tensorboard=false", "training.progress_bar=false", "checkpoint.save_every=1",
            "checkpoint.async_save=false", *MESH, *extra]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return launch.rlvr_workspace(tmp_path_factory, "multihost_rlvr")


def run_both(workspace, name, extra):
    """The 1×8 and 2×4 runs of one algorithm, side by side; returns their output_dirs."""
    directories, _ = launch.single_and_multi(workspace, name, lambda out: rlvr_arguments(workspace, out, *extra),
                                             TIMEOUT)
    return directories


@pytest.fixture(scope="module")
def ppo_runs(workspace):
    return run_both(workspace, "ppo", PPO)


@pytest.fixture(scope="module")
def grpo_runs(workspace):
    return run_both(workspace, "grpo", GRPO)


def step_metrics(output_dir):
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return rows[0], [row for row in rows if "train/loss" in row]


def assert_runs_equal(single_dir, multi_dir):
    single_header, single = step_metrics(single_dir)
    multi_header, multi = step_metrics(multi_dir)
    assert [row["step"] for row in multi] == [row["step"] for row in single] == [1, 2, 3, 4]
    for key in COMPARED:
        np.testing.assert_allclose([row[key] for row in multi], [row[key] for row in single], rtol=1e-5, atol=1e-5,
                                   err_msg=key)
    assert len({round(row["train/loss"], 6) for row in multi}) > 1  # it trained
    assert (multi_header["process_count"], multi_header["device_count"]) == (2, 8)
    ours, theirs = read_checkpoint_dir(single_dir / "hf"), read_checkpoint_dir(multi_dir / "hf")
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-6, rtol=0, err_msg=name)
    if (multi_dir / "best").exists():  # keep-best exported a checkpoint step: the best dev accuracy's
        best = [p.name for p in (multi_dir / "best").iterdir() if p.name.isdigit()]
        assert len(best) == 1 and best == [p.name for p in (single_dir / "best").iterdir() if p.name.isdigit()]


def test_ppo_on_two_processes_equals_one_process(ppo_runs):
    assert_runs_equal(*ppo_runs)


@pytest.mark.slow  # the same capability as PPO's (make test keeps that one); 70 s of CI
def test_grpo_on_two_processes_equals_one_process(grpo_runs):
    assert_runs_equal(*grpo_runs)
    assert (grpo_runs[1] / "best").is_dir()


def test_no_process_gathered_a_whole_array(workspace, ppo_runs):
    counts = launch.gather_counts(workspace / "counter")
    assert counts["processes"] >= 2  # the two PPO processes reported (and the GRPO ones, when they ran first)
    assert (counts["assert_equal"], counts["process_allgather"]) == (0, 0)


@pytest.mark.slow
def test_no_grpo_process_gathered_a_whole_array(workspace, ppo_runs, grpo_runs):
    counts = launch.gather_counts(workspace / "counter")
    assert counts["processes"] == 4  # two PPO and two GRPO processes reported
    assert (counts["assert_equal"], counts["process_allgather"]) == (0, 0)


@pytest.mark.slow
def test_a_killed_ppo_run_resumes_to_the_same_export(workspace, ppo_runs):
    """SIGKILL both processes of a 2-process PPO run after its second checkpoint; the same two commands
    rerun resume, and the export is bit-identical to the uninterrupted run's."""
    _, uninterrupted = ppo_runs
    output_dir = workspace / "ppo_killed"
    arguments = rlvr_arguments(workspace, output_dir, *PPO)
    launch.killed_and_rerun(arguments, output_dir, 2, workspace / "logs" / "ppo_killed", TIMEOUT)
    assert_same_weights(output_dir / "hf", uninterrupted / "hf")


def test_convert_exports_an_rlvr_checkpoint_as_the_stage_exported_it(workspace, ppo_runs):
    """``tulu-jax convert --checkpoint`` of an RLVR run reads the policy out of the newest step (keep-best off:
    the stage exported that same policy)."""
    single, _ = ppo_runs
    converted = workspace / "ppo_converted"
    result = launch.run(["convert", "--checkpoint", str(single), "--to-hf", str(converted)], 1, 8,
                        workspace / "logs" / "ppo_convert", timeout=TIMEOUT)
    assert result.returncodes == [0], result.stderr[0][-3000:]
    assert_same_weights(converted, single / "hf")
