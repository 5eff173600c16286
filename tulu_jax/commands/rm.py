"""``tulu-jax rm``: train a reward model (Llama + scalar head, Bradley–Terry) on preference pairs."""

from __future__ import annotations

import argparse

from tulu_jax.commands._stage_arguments import add_stage_arguments, resume_flag

NAME = "rm"
USES_DEVICES = True
HELP = "reward model: Bradley–Terry on preference pairs; the export initialises the PPO value model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, "configs/rm_tiny_cpu.yaml", "optimizer.learning_rate=3e-6")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.config import load_config
    from tulu_jax.stages.reward_model import RewardModelConfig, run_reward_model

    config = load_config(RewardModelConfig, args.config, args.overrides)
    result = run_reward_model(config, resume=resume_flag(args))
    if result.eval_metrics:
        print("held-out: " + "  ".join(f"{key} {value:.4g}" for key, value in sorted(result.eval_metrics.items())))
    print(f"saved the reward model to {result.export_dir} (load it with tulu_jax.stages.reward_model.load_reward_model)")
    return 0
