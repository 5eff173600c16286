"""The reward-model stage on a tiny model: Bradley–Terry training reaches high pairwise accuracy on
separable pairs, and its export loads as LlamaScalarHead params (what the PPO value model starts from)."""

from __future__ import annotations

import numpy as np
import pytest

from data_pipeline.pipeline import prepare_data
from tulu_jax.config import from_dict
from tulu_jax.errors import CheckpointError
from tulu_jax.models.value_head import LlamaScalarHead
from tulu_jax.objectives.reward_model import last_token_index
from tulu_jax.stages.reward_model import RewardModelConfig, load_reward_model, run_reward_model

from tests.stages.preference_fixtures import build_tokenizer, enable_compilation_cache, stage_dict, write_pairs


@pytest.fixture(scope="module")
def trained_rm(tmp_path_factory):
    root = tmp_path_factory.mktemp("rm")
    enable_compilation_cache(root / "xla_cache")
    raw = stage_dict(root, write_pairs(root / "pairs.jsonl", 96, seed=1), build_tokenizer(root),
                     optimizer={"learning_rate": 3e-3})
    config = from_dict(RewardModelConfig, raw)
    return config, run_reward_model(config)


def test_reward_model_reaches_high_pairwise_accuracy(trained_rm):
    _, result = trained_rm
    assert result.eval_metrics["accuracy"] > 0.9
    assert result.eval_metrics["margin"] > 0.0


def test_exported_reward_model_loads_as_scalar_head_params_and_scores_like_training(trained_rm):
    config, result = trained_rm
    model_config, params = load_reward_model(config.output_dir)
    assert set(params) == {"model", "score"} and "lm_head" not in params["model"]
    score = params["score"]["kernel"]
    assert score.shape == (model_config.hidden_size,) and np.any(np.asarray(score) != 0)
    # Score the held-out pairs directly with LlamaScalarHead (last real token by hand): same accuracy.
    rows = prepare_data(config.data, kind="preference", log=lambda line: None).eval
    scores = {}
    for side in ("chosen", "rejected"):
        per_token = LlamaScalarHead(model_config).apply(
            {"params": params}, rows[f"{side}_input_ids"], positions=rows[f"{side}_positions"],
            segment_ids=rows[f"{side}_segment_ids"])
        last = np.array([np.nonzero(row)[0][-1] for row in rows[f"{side}_segment_ids"]])
        assert np.array_equal(last, np.asarray(last_token_index(rows[f"{side}_segment_ids"])))
        scores[side] = np.asarray(per_token)[np.arange(len(last)), last]
    accuracy = float(np.mean(scores["chosen"] > scores["rejected"]))
    assert accuracy > 0.9
    assert accuracy == pytest.approx(result.eval_metrics["accuracy"], abs=1e-6)


def test_loading_a_directory_without_a_reward_model_names_it(tmp_path):
    with pytest.raises(CheckpointError, match="holds no reward model"):
        load_reward_model(tmp_path)
