"""Numbers outside the range where they mean what their names say are refused at load, naming the key
(issue 28 findings 10, 13, 14). Each was accepted before: a NaN reward failed after step 1 with "Lower
optimizer.learning_rate", ``temperature=inf`` sampled uniformly, ``evaluation.batch_size=-1`` died later with
an IndexError, and ``model.resize_vocab_multiple=100000000`` tried to grow the vocabulary to 10^8 rows."""

from pathlib import Path

import pytest

from tulu_jax.config import load_config
from tulu_jax.errors import ConfigError
from tulu_jax.stages.rlvr.config import RLVRConfig
from tulu_jax.stages.sft import SFTConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("override, key", [
    ("rollout.temperature=.inf", "rollout.temperature"),
    ("objective.clip_eps=-0.2", "objective.clip_eps"),
    ("objective.kl_beta=-0.05", "objective.kl_beta"),
    ("objective.gamma=1.5", "objective.gamma"),
    ("objective.lam=-0.1", "objective.lam"),
    ("objective.value_clip=-0.2", "objective.value_clip"),
    ("ppo.value_loss_coef=-0.1", "ppo.value_loss_coef"),
    ("evaluation.every=-1", "evaluation.every"),
    ("evaluation.batch_size=-1", "evaluation.batch_size"),
    ("rollout.verifiable_reward=.nan", "rollout.verifiable_reward"),
    ("rollout.nonstop_penalty=.nan", "rollout.nonstop_penalty"),
])
def test_rlvr_numbers_out_of_range_are_refused_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(RLVRConfig, CONFIGS / "rlvr_tiny_cpu.yaml", [override])


@pytest.mark.parametrize("name", sorted(path.name for path in CONFIGS.glob("*rlvr*.yaml")))
def test_every_shipped_rlvr_config_is_within_range(name):
    load_config(RLVRConfig, CONFIGS / name)


@pytest.mark.parametrize("multiple", [0, -8, 100_000_000])
def test_a_vocabulary_multiple_out_of_range_is_refused(multiple):
    with pytest.raises(ConfigError, match="model.resize_vocab_multiple"):
        load_config(SFTConfig, CONFIGS / "sft_tiny_cpu.yaml", [f"model.resize_vocab_multiple={multiple}"])
