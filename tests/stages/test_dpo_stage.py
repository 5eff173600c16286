"""The DPO stage end to end on a tiny model: it learns separable preferences, caches reference log-probs,
and computes the dpo / dpo_norm losses as RECIPE.md section 5 writes them."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from data_pipeline.pipeline import prepare_data
from tulu_jax.config import from_dict
from tulu_jax.models import init_params
from tulu_jax.stages import dpo as dpo_stage
from tulu_jax.stages.dpo import DPOConfig, make_dpo_loss, run_dpo
from tulu_jax.stages.preference_batches import PAIR_KEYS, pair_sequence_logps
from tulu_jax.stages.preference_training import global_pairs_context, pair_means

from tests.stages.preference_fixtures import (
    build_tokenizer, enable_compilation_cache, read_metrics, stage_dict, write_pairs,
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    enable_compilation_cache(root / "xla_cache")
    return {"root": root, "data": write_pairs(root / "pairs.jsonl", 96), "tokenizer": build_tokenizer(root),
            "cache": root / "reference_cache"}


def dpo_config(workspace, name: str, **sections) -> DPOConfig:
    dpo = {"loss_type": "dpo_norm", "beta": 5.0, "reference_cache_dir": str(workspace["cache"]), **sections.pop("dpo", {})}
    raw = stage_dict(workspace["root"] / name, workspace["data"], workspace["tokenizer"], dpo=dpo, **sections)
    return from_dict(DPOConfig, raw)


@pytest.fixture(scope="module")
def trained(workspace):
    """One dpo_norm run of 20 steps with a cached reference (the first run: the cache is written)."""
    config = dpo_config(workspace, "first")
    return config, run_dpo(config, export=False)


def test_dpo_norm_learns_the_preferences_and_widens_the_margin(trained):
    config, result = trained
    history = [row for row in read_metrics(config.output_dir) if "rewards/margin" in row]
    # Step 1: the policy is the reference, so every reward is exactly 0 and the loss is log 2.
    assert history[0]["rewards/margin"] == pytest.approx(0.0, abs=1e-5)
    assert history[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-5)
    assert result.eval_metrics["rewards/accuracy"] > 0.9
    assert result.eval_metrics["rewards/margin"] > 0.5
    assert np.mean([row["rewards/margin"] for row in history[-5:]]) > 0.5
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen", "logps/rejected", "lengths/chosen",
                "lengths/rejected", "rewards/accuracy", "loss"):
        assert key in history[-1]


def test_reference_cache_is_written_once_then_hit_without_any_reference_forward(workspace, trained, monkeypatch):
    _, first = trained
    assert first.details["reference_cache_hit"] is False and first.details["reference_batches_computed"] > 0
    assert len(list(workspace["cache"].glob("*.npz"))) == 2  # the train and the eval split

    def no_reference_pass(*args, **kwargs):
        raise AssertionError("a reference forward was built although the cache holds every example")

    monkeypatch.setattr(dpo_stage, "jit_reference_pass", lambda *a, **k: no_reference_pass)
    config = dpo_config(workspace, "second", training={"max_steps": 2})
    second = run_dpo(config, export=False)
    assert second.details["reference_cache_hit"] is True and second.details["reference_batches_computed"] == 0
    # Same data order and same start: the first steps match the first run's.
    first_rows = [row for row in read_metrics(trained[0].output_dir) if "rewards/margin" in row][:2]
    second_rows = [row for row in read_metrics(config.output_dir) if "rewards/margin" in row]
    for a, b in zip(first_rows, second_rows):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def numpy_dpo_loss(pc, pr, rc, rr, lc, lr, beta, normalise):
    chosen, rejected = pc - rc, pr - rr
    if normalise:
        chosen, rejected = chosen / lc, rejected / lr
    z = chosen - rejected
    return float(np.mean(np.log1p(np.exp(-beta * z))))  # −log σ(βz)


def test_dpo_and_dpo_norm_losses_follow_the_formulas_on_stage_rows(workspace, trained):
    """The stage's loss function on real rows, trained policy vs a random reference, against NumPy."""
    config, result = trained
    prepared = prepare_data(config.data, kind="preference", log=lambda line: None)
    from tulu_jax.stages.model_source import resolve_model_config

    model_config = resolve_model_config(config.model)
    batch = {key: np.asarray(prepared.eval[key][:8]) for key in PAIR_KEYS}
    params = jax.device_get(result.params)
    reference_params = init_params(model_config, jax.random.PRNGKey(7))
    policy = jax.device_get(pair_sequence_logps(model_config, params, batch, 1024))
    reference = jax.device_get(pair_sequence_logps(model_config, reference_params, batch, 1024))
    batch = {**batch, "reference_chosen_logps": reference["chosen_logps"],
             "reference_rejected_logps": reference["rejected_logps"]}
    losses = {}
    for loss_type in ("dpo", "dpo_norm"):
        objective = dpo_stage.DPOObjectiveConfig(loss_type=loss_type, beta=0.5 if loss_type == "dpo" else 5.0)
        loss, sums = make_dpo_loss(model_config, objective)(params, batch, global_pairs_context(batch))
        expected = numpy_dpo_loss(policy["chosen_logps"], policy["rejected_logps"], reference["chosen_logps"],
                                  reference["rejected_logps"], policy["chosen_lengths"], policy["rejected_lengths"],
                                  objective.beta, normalise=loss_type == "dpo_norm")
        assert float(loss) == pytest.approx(expected, rel=1e-4)
        means = pair_means({key: float(value) for key, value in sums.items()})
        assert means["lengths/chosen"] == pytest.approx(float(np.mean(policy["chosen_lengths"])))
        losses[loss_type] = float(loss)
    assert losses["dpo"] != pytest.approx(losses["dpo_norm"], rel=1e-2)


@pytest.mark.slow
def test_plain_dpo_runs_on_the_stage(workspace, trained):
    config = dpo_config(workspace, "plain", dpo={"loss_type": "dpo", "beta": 0.1}, training={"max_steps": 3})
    result = run_dpo(config, export=False)
    assert result.details["reference_cache_hit"] is True  # the reference numbers do not depend on the loss
    rows = [row for row in read_metrics(config.output_dir) if "rewards/margin" in row]
    assert len(rows) == 3 and all(math.isfinite(row["loss"]) for row in rows)
    assert rows[0]["loss"] == pytest.approx(math.log(2.0), abs=1e-5)


@pytest.mark.slow
def test_in_step_reference_gives_the_same_steps_as_the_cache(workspace, trained):
    """reference=in_step keeps the reference params and computes in the step: same losses, no cache."""
    config = dpo_config(workspace, "in_step", dpo={"reference": "in_step"},
                        training={"max_steps": 3, "micro_batches": 2})
    result = run_dpo(config, export=False)
    assert result.details["reference_cache_hit"] is None and result.details["reference_batches_computed"] == 0
    cached = [row for row in read_metrics(trained[0].output_dir) if "rewards/margin" in row][:3]
    in_step = [row for row in read_metrics(config.output_dir) if "rewards/margin" in row]
    for a, b in zip(cached, in_step, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
        assert b["rewards/margin"] == pytest.approx(a["rewards/margin"], rel=1e-3, abs=1e-5)
