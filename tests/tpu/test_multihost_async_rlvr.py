"""Asynchronous ``tulu-jax rlvr`` (``rollout.async_steps=1``) on 2 processes × 4 CPU devices equals 1 × 8.

The same sub-mesh split on both: each process gives half its devices to the sampler, so the sampler and the
learner have 4 chips each whatever the process count; the learner is fsdp 2 × tensor 2 and the sampler decodes
in groups of 2 chips, so the weight copy moves tensor-sharded bf16 weights. Launched as a pod is, compared as
the synchronous runs are (``test_multihost_rlvr``): per-step metrics within 1e-5, exports within 1e-6, no
whole-array gather. A 2-process run SIGKILLed after its second checkpoint (a rollout queued ahead of the
learner) and rerun exports the uninterrupted run's bytes.
"""


import pytest

from tests.helpers.killed_runs import assert_same_weights
from tests.tpu import launch
from tests.tpu.test_multihost_rlvr import GRPO, PPO, TIMEOUT, assert_runs_equal, rlvr_arguments, step_metrics

ASYNC = ["rollout.async_steps=1", "objective.off_policy_correction=tis", "mesh.data=1", "mesh.fsdp=2",
         "mesh.tensor=2"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return launch.rlvr_workspace(tmp_path_factory, "multihost_async_rlvr")


def run_both(workspace, name, extra):
    directories, _ = launch.single_and_multi(
        workspace, name, lambda out: rlvr_arguments(workspace, out, *extra, *ASYNC), TIMEOUT)
    return directories


@pytest.fixture(scope="module")
def ppo_runs(workspace):
    return run_both(workspace, "ppo", PPO)


def test_async_ppo_on_two_processes_equals_one_process(ppo_runs):
    assert_runs_equal(*ppo_runs)
    _, rows = step_metrics(ppo_runs[1])
    assert [row["rollout/policy_lag"] for row in rows] == [0, 1, 1, 1]  # step 1's rollout is version 0's


def test_no_async_process_gathered_a_whole_array(workspace, ppo_runs):
    counts = launch.gather_counts(workspace / "counter")
    assert counts["processes"] >= 2
    assert (counts["assert_equal"], counts["process_allgather"]) == (0, 0)


@pytest.mark.slow  # the same capability as PPO's (make test keeps that one)
def test_async_grpo_on_two_processes_equals_one_process(workspace):
    assert_runs_equal(*run_both(workspace, "grpo", GRPO))


@pytest.mark.slow
def test_a_killed_async_run_resumes_to_the_same_export(workspace, ppo_runs):
    """SIGKILL both processes once step 2 is checkpointed (its queue holds step 3's rollout, sampled by
    version 1); the rerun restores the queue and exports the uninterrupted run's bytes."""
    _, uninterrupted = ppo_runs
    output_dir = workspace / "ppo_killed"
    arguments = rlvr_arguments(workspace, output_dir, *PPO, *ASYNC)
    launch.killed_and_rerun(arguments, output_dir, 2, workspace / "logs" / "ppo_killed", TIMEOUT)
    assert_same_weights(output_dir / "hf", uninterrupted / "hf")
