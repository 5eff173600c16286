"""Resuming RLVR from a checkpoint gives bit-for-bit the run that was never interrupted (CPU, toy task).

The checkpoint holds the policy and value params, both optimizer states, the rollout step, the rng and the
data iterator's position; the reference is reloaded from ``model.source``, and the rollout key is derived
from the step, so the resumed run samples the same responses, scores them the same, and applies the same
updates. Resuming goes through the stage runner (``stages.resume.resume_state``), as SFT and DPO do.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.killed_runs import assert_same_weights
from tests.stages.rlvr_fixtures import toy_config
from tests.stages.rlvr_toy_task import ToyTokenizer, toy_prompts
from tulu_jax.errors import CheckpointError
from tulu_jax.stages.rlvr import RLVRData, RLVRStage
from tulu_jax.stages.runner import run_stage
from tulu_jax.training.hooks import Hook


class ProcessDied(Exception):
    pass


class DieAfter(Hook):
    """The process dies once step ``step`` is checkpointed: the next step's update is lost with it."""

    def __init__(self, step: int):
        self.step = step

    def due(self, step: int, total_steps: int) -> bool:
        return step == self.step + 1

    def after_step(self, step: int, state) -> dict:
        raise ProcessDied(f"killed during step {step}")


def run(config, resume=None, stop_after=None):
    stage = RLVRStage(config, RLVRData(ToyTokenizer(), toy_prompts(32)))
    if stop_after is None:
        return run_stage(stage, resume)
    with pytest.raises(ProcessDied):
        run_stage(stage, resume, hooks=(DieAfter(stop_after),))


def train_metrics(output_dir):
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [(row["step"], row["reward"], row["train/loss"]) for row in rows if "train/loss" in row]


@pytest.mark.slow
def test_resume_mid_run_equals_uninterrupted_run(tmp_path):
    settings = dict(training={"steps": 3}, rollout={"prompts_per_step": 8}, ppo={"epochs": 2},
                    mesh={"data": 1, "fsdp": -1, "tensor": 2})
    straight = toy_config("ppo", output_dir=str(tmp_path / "straight"), **settings)
    resumed = toy_config("ppo", output_dir=str(tmp_path / "resumed"), **settings)

    run(straight)
    run(resumed, stop_after=2)  # the process died after step 2: only the checkpoint survives
    assert not (tmp_path / "resumed" / "hf").exists()
    run(resumed, resume=True)

    assert train_metrics(tmp_path / "straight") == train_metrics(tmp_path / "resumed")
    assert [step for step, _, _ in train_metrics(tmp_path / "resumed")] == [1, 2, 3]
    assert_same_weights(tmp_path / "resumed" / "hf", tmp_path / "straight" / "hf")
    assert (tmp_path / "resumed" / "config.yaml").is_file()


def test_an_existing_run_is_not_silently_continued_when_resume_is_off(tmp_path):
    config = toy_config("ppo", output_dir=str(tmp_path / "run"), training={"steps": 1}, rollout={"prompts_per_step": 8},
                        ppo={"epochs": 1})
    run(config)
    off = toy_config("ppo", output_dir=str(tmp_path / "run"), training={"steps": 1}, rollout={"prompts_per_step": 8},
                     ppo={"epochs": 1}, checkpoint={"resume": False})
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        run(off)
    assert np.isfinite(train_metrics(tmp_path / "run")[0][2])
