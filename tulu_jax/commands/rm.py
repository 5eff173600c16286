"""``tulu-jax rm``: train a reward model (Llama + scalar head, Bradley–Terry) on preference pairs."""

from __future__ import annotations

import argparse
import logging

NAME = "rm"
HELP = "reward model: Bradley–Terry on preference pairs; the export initialises the PPO value model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a stage YAML, e.g. configs/rm_tiny_cpu.yaml")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in output_dir (an error if there is none)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optimizer.learning_rate=3e-6")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.config import load_config
    from tulu_jax.stages.reward_model import RewardModelConfig, run_reward_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    config = load_config(RewardModelConfig, args.config, args.overrides)
    result = run_reward_model(config, resume=True if args.resume else None)
    if result.eval_metrics:
        print("held-out: " + "  ".join(f"{key} {value:.4g}" for key, value in sorted(result.eval_metrics.items())))
    print(f"saved the reward model to {result.export_dir} (load it with tulu_jax.stages.reward_model.load_reward_model)")
    return 0
