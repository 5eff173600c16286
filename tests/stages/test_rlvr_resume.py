"""Resuming RLVR from a checkpoint gives bit-for-bit the run that was never interrupted (CPU, tiny config).

The checkpoint holds the policy and value params, both optimizer states, the step, the rng and the data
iterator's position; the rollout key is derived from the step, so the resumed run samples the same
responses, scores them the same, and applies the same updates.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tests.stages.rlvr_fixtures import toy_config, toy_stage
from tulu_jax.stages.rlvr import run_stage
from tulu_jax.stages.rlvr_toy_task import toy_prompts


def fresh_state(stage, host_state):
    """Put a host copy of a state back on the stage's mesh (as a new process would start)."""
    return jax.device_put(host_state, stage.shardings)


@pytest.mark.slow
def test_resume_mid_run_equals_uninterrupted_run(tmp_path):
    config = toy_config("ppo", steps=3, rollout={"prompts_per_step": 8}, ppo={"epochs": 2})
    stage = toy_stage(config)
    initial = jax.device_get(stage.state)
    prompts = toy_prompts(32)
    quiet = lambda line: None  # noqa: E731

    uninterrupted = run_stage(stage, prompts, log=quiet, output_dir=str(tmp_path / "straight"))
    final_straight = jax.device_get(stage.state)

    stage.state = fresh_state(stage, initial)
    first_part = run_stage(stage, prompts, log=quiet, output_dir=str(tmp_path / "resumed"), stop_after=2)
    stage.state = fresh_state(stage, initial)  # the process died: only the checkpoint survives
    resumed_lines = []
    second_part = run_stage(stage, prompts, log=resumed_lines.append, output_dir=str(tmp_path / "resumed"))
    final_resumed = jax.device_get(stage.state)

    assert "resumed from rollout step 2" in resumed_lines
    assert [m["step"] for m in first_part + second_part] == [1, 2, 3]
    for straight, resumed in zip(uninterrupted, first_part + second_part):
        assert straight["reward"] == resumed["reward"]
        assert straight["train/loss"] == resumed["train/loss"]
    assert int(final_resumed.step) == int(final_straight.step) == 3 * 2
    leaves_straight = jax.tree.leaves(final_straight)
    leaves_resumed = jax.tree.leaves(final_resumed)
    assert len(leaves_straight) == len(leaves_resumed)
    for a, b in zip(leaves_straight, leaves_resumed):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The run trained: the policy moved away from its start.
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: np.abs(np.asarray(a) - np.asarray(b)).max(),
                                         final_straight.params["policy"], initial.params["policy"]))
    assert max(moved) > 0
