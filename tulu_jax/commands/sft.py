"""``tulu-jax sft``: supervised fine-tuning (Tülu 3 stage 1) from a YAML config with key=value overrides."""

from __future__ import annotations

import argparse
import logging

NAME = "sft"
HELP = "supervised fine-tuning: train on chat data, checkpoint, export a Hugging Face model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a stage YAML, e.g. configs/tulu3_8b_sft.yaml")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from the newest checkpoint in output_dir (an error if there is none); "
        "without it a run still resumes automatically when checkpoint.resume is true (the default)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. optimizer.learning_rate=1e-5")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.config import load_config
    from tulu_jax.stages.sft import SFTConfig, run_sft

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    config = load_config(SFTConfig, args.config, args.overrides)
    export = run_sft(config, resume=True if args.resume else None)
    print(f"exported the fine-tuned model to {export}")
    return 0
