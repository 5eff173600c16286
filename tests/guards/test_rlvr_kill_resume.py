"""``tulu-jax rlvr`` with keep-best, SIGKILLed and rerun, exports exactly what an uninterrupted run exports.

Three kills: at a rollout step after keep-best has chosen a policy (the best policy is a checkpoint step
under ``output_dir/best``, so the rerun knows it), in the middle of a rollout (held once the policy is in the
sampling layout, before any row is decoded), and during the export (held there by
``tests/helpers/pause_points``, with the shards written into the temporary sibling). Each rerun is
the same command. The exported weights are compared byte for byte, and the kept step must be the same.

On this tiny random policy the starting policy (rollout step 0) stays the best on the dev prompts, so the
export is not the last state: a rerun that forgot the kept policy (the old in-memory keep-best) evaluated the
restored state as its "starting policy", kept it, and exported it. The recipe test marked ``slow``
(``tests/stages/test_recipe_kills.py``) kills ``make run``'s recipe where keep-best has chosen a trained step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.killed_runs import assert_same_weights, finish, kill_when, start, steps_in
from tests.helpers.pause_points import pause_environment
from tests.helpers.rlvr_inputs import make_rlvr_inputs, rlvr_input_arguments
from tests.tpu import launch

TIMEOUT = 600
STEPS = 6


def arguments(inputs: Path, output_dir: Path) -> list[str]:
    return ["rlvr", "--config", "configs/rlvr_tiny_cpu.yaml", f"output_dir={output_dir}",
            *rlvr_input_arguments(inputs), "data.max_prompt_len=32", "rollout.prompts_per_step=8",
            "rollout.max_new_tokens=4", "evaluation.every=2", "evaluation.batch_size=8",
            "evaluation.max_new_tokens=4", "evaluation.keep_best=true", "ppo.epochs=2", "ppo.logprob_chunk=8",
            "optimizer.learning_rate=3e-3", f"training.steps={STEPS}", "training.tensorboard=false",
            "training.progress_bar=false", "checkpoint.save_every=1", "checkpoint.async_save=false",
            "mesh.data=1", "mesh.fsdp=-1", "mesh.tensor=1"]


def kept_step(output_dir: Path) -> int:
    (step,) = steps_in(output_dir / "best")
    return step


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rlvr_kill")
    inputs = make_rlvr_inputs(root / "inputs")
    env = launch.environment(1)
    logs = root / "logs"
    logs.mkdir()

    straight = root / "straight"
    finish(arguments(inputs, straight), env, TIMEOUT)
    assert kept_step(straight) < STEPS  # a later policy never beat it: the export is not simply the last state

    killed = root / "killed"
    command = arguments(inputs, killed)
    # Kill 1: a rollout step after keep-best has chosen a trained policy.
    process = start(command, env, logs / "first.log")

    def past_a_chosen_policy() -> bool:
        best, saved = steps_in(killed / "best"), steps_in(killed / "checkpoints")
        return bool(best) and bool(saved) and saved[-1] > best[-1]

    kill_when(process, past_a_chosen_policy, "keep-best chose a policy and a later step was saved", TIMEOUT)
    first_kill = {"best": steps_in(killed / "best"), "checkpoints": steps_in(killed / "checkpoints")}
    assert not (killed / "hf").exists() and first_kill["checkpoints"][-1] < STEPS

    # Kill 1b: in the middle of a rollout: the policy copied into the sampling layout, no row decoded yet.
    paused_env, marker = pause_environment(root / "pause_rollout", "tulu_jax.generation.sampling_layout.to_sampling_layout",
                                           env, calls=2)
    process = start(command, paused_env, logs / "rollout.log")
    kill_when(process, marker.exists, "a rollout began", TIMEOUT)
    rollout_kill = steps_in(killed / "checkpoints")
    assert not (killed / "hf").exists() and rollout_kill[-1] < STEPS

    # Kill 2: during the export, the shards written into the temporary sibling, not yet renamed into place.
    paused_env, marker = pause_environment(root / "pause", "tulu_jax.hf.streamed_export._write_shards", env)
    process = start(command, paused_env, logs / "second.log")
    kill_when(process, marker.exists, "the export wrote its shards", TIMEOUT)
    half_written = [p.name for p in killed.iterdir() if p.name.startswith(".hf.tmp-")]

    # The same command again, to the end.
    result = finish(command, env, TIMEOUT)
    return {"straight": straight, "killed": killed, "first_kill": first_kill, "half_written": half_written,
            "logs": [(logs / "rollout.log").read_text(), (logs / "second.log").read_text(), result.stderr]}


def test_the_kills_landed_where_intended(runs):
    first_kill = runs["first_kill"]
    assert first_kill["best"] and first_kill["checkpoints"][-1] > first_kill["best"][-1]
    assert runs["half_written"], "the export was not caught half-written"
    assert all("resumed from" in log for log in runs["logs"])


def test_the_rerun_keeps_the_same_best_policy_and_exports_it_bit_identically(runs):
    straight, killed = runs["straight"], runs["killed"]
    assert kept_step(killed) == kept_step(straight)
    assert_same_weights(killed / "hf", straight / "hf")
    for name in ("config.json", "generation_config.json", "tulu_jax_config.json"):
        ours, reference = (json.loads((run / "hf" / name).read_text()) for run in (killed, straight))
        if name == "tulu_jax_config.json":  # the run config: the same but for where each run wrote
            assert (ours.pop("output_dir"), reference.pop("output_dir")) == (str(killed), str(straight))
        assert ours == reference, name


def test_the_rerun_logs_each_step_once_with_the_uninterrupted_values(runs):
    def rows(output_dir):
        lines = (output_dir / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines if '"step"' in line]

    def by_step(output_dir, key):
        return [(row["step"], row[key]) for row in rows(output_dir) if key in row]

    for key in ("reward", "train/loss", "eval/accuracy"):
        assert by_step(runs["killed"], key) == by_step(runs["straight"], key), key


def test_no_half_written_export_is_left_beside_the_output(runs):
    assert sorted(p.name for p in runs["killed"].iterdir() if p.name.startswith(".hf")) == []


def test_convert_exports_the_kept_policy_from_its_checkpoint_step(runs, tmp_path):
    """``tulu-jax convert --checkpoint <run>/best`` reads the kept policy: the bytes the stage exported."""
    converted = tmp_path / "best_hf"
    finish(["convert", "--checkpoint", str(runs["straight"] / "best"), "--to-hf", str(converted)],
           launch.environment(1), TIMEOUT)
    assert_same_weights(converted, runs["straight"] / "hf")
