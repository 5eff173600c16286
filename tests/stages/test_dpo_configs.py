"""The shipped DPO / RM configs load, carry the Tülu 3 recipe values (RECIPE.md section 5), and fit their
meshes; the CLI refuses a bad override with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tulu_jax.cli import main
from tulu_jax.config import load_config
from tulu_jax.errors import ConfigError
from tulu_jax.stages.dpo import DPOConfig
from tulu_jax.stages.reward_model import RewardModelConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPE = {  # size: (learning rate, pairs per step, pod chips)
    "8b": (5e-7, 128, 64),
    "70b": (2e-7, 128, 256),
    "405b": (2e-7, 256, 512),
}


@pytest.mark.parametrize("size", sorted(RECIPE))
def test_tulu3_dpo_configs_match_the_recipe(size):
    config = load_config(DPOConfig, CONFIGS / f"tulu3_{size}_dpo.yaml")
    learning_rate, batch, chips = RECIPE[size]
    assert (config.objective.loss_type, config.objective.beta, config.objective.reference) == ("dpo_norm", 5.0, "cached")
    assert config.optimizer.learning_rate == pytest.approx(learning_rate)
    assert (config.schedule.kind, config.schedule.warmup_ratio) == ("linear", 0.1)
    assert (config.training.epochs, config.training.batch_size, config.data.max_seq_len) == (1, batch, 2048)
    mesh = config.mesh
    assert mesh.data * mesh.fsdp * mesh.tensor == chips
    micro_batch = config.training.batch_size // config.training.micro_batches
    assert micro_batch % (mesh.data * mesh.fsdp) == 0


def test_tiny_configs_load():
    assert load_config(DPOConfig, CONFIGS / "dpo_tiny_cpu.yaml").model.source == "tiny"
    assert load_config(RewardModelConfig, CONFIGS / "rm_tiny_cpu.yaml").training.batch_size == 16


def test_unknown_loss_type_is_refused_with_the_allowed_values():
    with pytest.raises(ConfigError, match="dpo.loss_type.*dpo_norm"):
        load_config(DPOConfig, CONFIGS / "dpo_tiny_cpu.yaml", ["dpo.loss_type=kto"])


def test_cli_prints_config_errors_without_a_traceback(capsys):
    assert main(["dpo", "--config", str(CONFIGS / "dpo_tiny_cpu.yaml"), "dpo.beta=-1"]) == 1
    assert "dpo.beta must be positive" in capsys.readouterr().err
