"""The arguments every training-stage command takes: ``--config``, ``--resume`` and key=value overrides."""

from __future__ import annotations

import argparse


def add_stage_arguments(parser: argparse.ArgumentParser, example_config: str, example_override: str) -> None:
    parser.add_argument("--config", required=True, help=f"a stage YAML, e.g. {example_config}")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from the newest checkpoint in output_dir (an error if there is none); "
        "without it a run still resumes automatically when checkpoint.resume is true (the default)",
    )
    parser.add_argument("overrides", nargs="*", help=f"key=value overrides, e.g. {example_override}")


def resume_flag(args: argparse.Namespace):
    """True when --resume insists on a checkpoint; None lets the config decide."""
    return True if args.resume else None
