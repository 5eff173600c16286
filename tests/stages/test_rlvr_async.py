"""Asynchronous RLVR in one process on 8 CPU devices (4 sampler chips, 4 learner chips).

- With ``async_steps: 1`` and ``tis`` the toy task is learned as synchronously: accuracy from under 20% to
  over 60% (``test_rlvr_learning``'s bar), each rollout at most one version behind the learner.
- A run killed after a checkpoint (a rollout queued ahead) resumes to the uninterrupted run's export.
- The pieces: the device split and the shard-for-shard copy between the sub-meshes.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tests.helpers.killed_runs import assert_same_weights
from tests.stages.rlvr_fixtures import toy_config
from tests.stages.rlvr_toy_task import ToyTokenizer, toy_prompts
from tests.stages.test_rlvr_resume import DieAfter, ProcessDied
from tulu_jax.distributed.sub_meshes import copy_across, missing_shards, split_devices
from tulu_jax.errors import MeshError
from tulu_jax.stages.rlvr import RLVRData, RLVRStage
from tulu_jax.stages.runner import run_stage


def async_config(algorithm: str, output_dir, steps: int, **sections):
    sections.setdefault("checkpoint", {"save_every": 0, "async_save": False})
    rollout = {"async_steps": 1, **({"prompts_per_step": 16} if algorithm == "ppo" else {})}
    return toy_config(algorithm, output_dir=str(output_dir), training={"steps": steps, "log_every": 1},
                      rollout=rollout, objective={"off_policy_correction": "tis"}, **sections)


def logged(output_dir) -> list[dict]:
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if "train/loss" in row]


@pytest.mark.parametrize("algorithm", ["grpo", pytest.param("ppo", marks=pytest.mark.slow)])
def test_async_tis_learns_the_toy_task(tmp_path, algorithm):
    run_stage(RLVRStage(async_config(algorithm, tmp_path, 25), RLVRData(ToyTokenizer(), toy_prompts(64))), False)
    history = logged(tmp_path)
    early = np.mean([row["accuracy"] for row in history[:3]])
    late = np.mean([row["accuracy"] for row in history[-3:]])
    assert early < 0.2 and late > 0.6, (early, late)
    assert [row["rollout/policy_lag"] for row in history] == [0] + [1] * 24
    assert history[0]["logprob_mismatch"] < 1e-4 < max(row["logprob_mismatch"] for row in history[1:])
    assert all(np.isfinite(row["kl"]) for row in history)


def test_a_killed_async_run_resumes_to_the_same_export(tmp_path):
    settings = dict(checkpoint={"save_every": 1, "async_save": False})
    prompts = RLVRData(ToyTokenizer(), toy_prompts(32))
    straight = async_config("grpo", tmp_path / "straight", 4, **settings)
    resumed = async_config("grpo", tmp_path / "resumed", 4, **settings)
    run_stage(RLVRStage(straight, prompts), False)
    with pytest.raises(ProcessDied):
        run_stage(RLVRStage(resumed, prompts), False, hooks=(DieAfter(2),))
    run_stage(RLVRStage(resumed, prompts), True)
    assert_same_weights(tmp_path / "resumed" / "hf", tmp_path / "straight" / "hf")
    assert [(row["step"], row["reward"]) for row in logged(tmp_path / "resumed")] == [
        (row["step"], row["reward"]) for row in logged(tmp_path / "straight")]


def test_split_devices_gives_each_process_sampler_and_learner_chips():
    sampler, learner = split_devices(2)
    assert [device.id for device in sampler] == [0, 1] and len(learner) == 6
    with pytest.raises(MeshError, match="both sub-meshes need at least one"):
        split_devices(8)


def test_copy_across_moves_each_shard_to_the_matching_device():
    devices = jax.devices()
    source = Mesh(np.asarray(devices[4:]).reshape(2, 2), ("data", "tensor"))
    target = Mesh(np.asarray(devices[:4]).reshape(2, 2), ("data", "tensor"))
    values = np.arange(24.0).reshape(6, 4)
    array = jax.device_put(values, NamedSharding(source, PartitionSpec(None, "tensor")))
    moved = copy_across(array, NamedSharding(target, PartitionSpec(None, "tensor")))
    assert {shard.device for shard in moved.addressable_shards} == set(devices[:4])
    np.testing.assert_array_equal(np.asarray(moved), values)
    # A target shard nobody holds in the same process (here: rows split the other way) is refused, by name.
    rows = NamedSharding(target, PartitionSpec("data", "tensor"))
    assert missing_shards(array, rows)
    with pytest.raises(MeshError, match="reshard it inside its own sub-mesh first"):
        copy_across(array, rows)
