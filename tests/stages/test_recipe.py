"""The embedded default end to end (`tulu-jax recipe --quick`): every stage runs, each reads the previous
stage's export; on the held-out prompts SFT beats the base model and RLVR does at least as well as DPO;
DPO raises its preference accuracy; RLVR keeps a policy that beats its starting policy on its dev prompts;
and transformers alone answers like we do. Then a second run finds every stage done and repeats nothing."""

import json
import os
import subprocess
import sys

import pytest

from tulu_jax.stages.recipe_report import read_metrics


def run_quick(directory):
    """`tulu-jax recipe --quick` as `make run` runs it: its own process, one CPU device."""
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    command = [sys.executable, "-m", "tulu_jax.cli", "recipe", "--config", "configs/demo_cpu.yaml", "--quick",
               f"output_dir={directory}"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("recipe")
    lines = run_quick(directory)
    state = json.loads((directory / "recipe.json").read_text())
    return directory, state, lines


def mean(values):
    values = list(values)
    return sum(values) / len(values)


def test_held_out_accuracy_orders_the_stages(quick_run):
    _, state, lines = quick_run
    accuracy = {stage: summary["all"]["pass@1"] for stage, summary in state["evals"].items()}
    assert set(accuracy) == {"base", "sft", "dpo", "rlvr"}
    assert accuracy["sft"] > accuracy["base"] + 0.3, accuracy
    assert accuracy["rlvr"] >= accuracy["dpo"], accuracy
    assert any(line.startswith("stage") for line in lines)  # the table was printed


def test_dpo_and_rlvr_improve_their_own_signals(quick_run):
    directory, _, _ = quick_run
    dpo = [row["rewards/accuracy"] for row in read_metrics(directory / "dpo" / "metrics.jsonl") if "rewards/accuracy" in row]
    quarter = max(1, len(dpo) // 4)
    assert len(dpo) >= 8 and mean(dpo[-quarter:]) > mean(dpo[:quarter]), dpo
    # RLVR's dev prompts (held out of its training prompts): the kept policy beats the starting one (step 0).
    dev = [row["eval/accuracy"] for row in read_metrics(directory / "rlvr" / "metrics.jsonl") if "eval/accuracy" in row]
    assert len(dev) >= 3 and max(dev[1:]) > dev[0], dev


def test_export_reloads_in_transformers_and_answers_like_us(quick_run):
    directory, _, lines = quick_run
    assert "  identical: yes" in lines, lines[-8:]
    assert (directory / "curves.png").stat().st_size > 10_000
    assert json.loads((directory / "rlvr" / "hf" / "config.json").read_text())["model_type"] == "llama"


def test_a_second_run_repeats_nothing(quick_run):
    directory, state, _ = quick_run
    lines = run_quick(directory)
    assert sum("done earlier" in line for line in lines) == 3
    assert json.loads((directory / "recipe.json").read_text())["evals"] == state["evals"]
