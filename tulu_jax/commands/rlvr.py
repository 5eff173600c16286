"""``tulu-jax rlvr``: reinforcement learning with verifiable rewards (Tülu 3 stage 3; PPO, or GRPO by config)."""

from __future__ import annotations

import argparse

from tulu_jax.commands._stage_arguments import add_stage_arguments, resume_flag

NAME = "rlvr"
USES_DEVICES = True
HELP = "reinforcement learning with verifiable rewards (Tülu 3 PPO, or GRPO) on RLVR prompts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, "configs/tulu3_8b_rlvr.yaml", "objective.kl_beta=0.07")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.config import load_config
    from tulu_jax.stages.rlvr import RLVRConfig, run_rlvr

    config = load_config(RLVRConfig, args.config, args.overrides)
    result = run_rlvr(config, resume=resume_flag(args))
    print(f"exported the RL-trained policy to {result.export_dir}")
    return 0
