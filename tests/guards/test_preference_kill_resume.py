"""``tulu-jax rm`` (and ``dpo``) SIGKILLed after a checkpoint and rerun export an uninterrupted run's bytes.

One process, as a user on one host launches it. ``make test`` runs the reward model here; DPO's kill in
``make test`` is the 2-process one in ``tests/tpu/test_multihost_stages.py`` (a killed peer), and its
one-process version here is marked ``slow``. The kill lands after checkpoint 4 of 12, so the rerun resumes from
a saved step, replays the steps after it, and must end where the uninterrupted run ended.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from tests.helpers.killed_runs import assert_same_weights, finish, kill_when, start, steps_in
from tests.stages.preference_fixtures import build_tokenizer, write_pairs
from tests.tpu import launch
from tulu_jax.stages.reward_model import load_reward_model

TIMEOUT = 600
STEPS = 12


def arguments(stage: str, root, output_dir) -> list[str]:
    return [stage, "--config", f"configs/{stage}_tiny_cpu.yaml", f"output_dir={output_dir}",
            f"data.sources=[{{path: {root / 'pairs.jsonl'}}}]", f"data.tokenizer={root / 'tokenizer'}",
            "data.max_seq_len=48", "training.batch_size=8", f"training.max_steps={STEPS}", "training.epochs=4",
            "training.log_every=1", "checkpoint.save_every=2", "checkpoint.async_save=false",
            *(["dpo.reference_cache_dir="] if stage == "dpo" else [])]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("preference_kill")
    write_pairs(root / "pairs.jsonl", 96)
    build_tokenizer(root)
    return root


@pytest.mark.parametrize("stage", [pytest.param("dpo", marks=pytest.mark.slow), "rm"])
def test_a_killed_run_resumes_to_the_uninterrupted_export(stage, inputs):
    env = launch.environment(1)
    straight, killed = inputs / f"{stage}_straight", inputs / f"{stage}_killed"
    finish(arguments(stage, inputs, straight), env, TIMEOUT)

    process = start(arguments(stage, inputs, killed), env, inputs / f"{stage}_killed.log")
    kill_when(process, lambda: 4 in steps_in(killed / "checkpoints"), "checkpoint 4", TIMEOUT)
    export = "hf" if stage == "dpo" else "reward_model"
    assert not (killed / export).exists() and max(steps_in(killed / "checkpoints")) < STEPS

    rerun = finish(arguments(stage, inputs, killed), env, TIMEOUT)
    assert "resumed from" in rerun.stderr
    if stage == "dpo":
        assert_same_weights(killed / export, straight / export)
    else:  # the reward model is exported as an Orbax params tree (what the PPO value model starts from)
        (_, ours), (_, reference) = load_reward_model(killed), load_reward_model(straight)
        assert jax.tree.structure(ours) == jax.tree.structure(reference)
        for mine, theirs in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
            assert np.asarray(mine).tobytes() == np.asarray(theirs).tobytes()
    losses = [[(row["step"], row["loss"]) for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
               if "loss" in row] for run in (straight, killed)]
    assert losses[0] == losses[1] and [step for step, _ in losses[0]] == list(range(1, STEPS + 1))
