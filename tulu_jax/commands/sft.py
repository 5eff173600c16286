"""``tulu-jax sft``: supervised fine-tuning (Tülu 3 stage 1) from a YAML config with key=value overrides."""

from __future__ import annotations

import argparse

from tulu_jax.commands._stage_arguments import add_stage_arguments, resume_flag

NAME = "sft"
USES_DEVICES = True
HELP = "supervised fine-tuning: train on chat data, checkpoint, export a Hugging Face model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, "configs/tulu3_8b_sft.yaml", "optimizer.learning_rate=1e-5")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.config import load_config
    from tulu_jax.stages.sft import SFTConfig, run_sft

    config = load_config(SFTConfig, args.config, args.overrides)
    result = run_sft(config, resume=resume_flag(args))
    print(f"exported the fine-tuned model to {result.export_dir}")
    return 0
