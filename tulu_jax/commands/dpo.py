"""``tulu-jax dpo``: preference tuning (Tülu 3 stage 2, length-normalised DPO) from a YAML config with
key=value overrides."""

from __future__ import annotations

import argparse
import logging

NAME = "dpo"
HELP = "direct preference optimisation (dpo_norm, dpo, simpo, ipo, wpo) with cached reference log-probs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="a stage YAML, e.g. configs/tulu3_8b_dpo.yaml")
    parser.add_argument(
        "--resume", action="store_true",
        help="continue from the newest checkpoint in output_dir (an error if there is none); "
        "without it a run still resumes automatically when checkpoint.resume is true (the default)",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. dpo.beta=5 dpo.reference=in_step")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.config import load_config
    from tulu_jax.stages.dpo import DPOConfig, run_dpo

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    config = load_config(DPOConfig, args.config, args.overrides)
    result = run_dpo(config, resume=True if args.resume else None)
    if result.eval_metrics:
        print("held-out: " + "  ".join(f"{key} {value:.4g}" for key, value in sorted(result.eval_metrics.items())))
    print(f"exported the preference-tuned model to {result.export_dir}")
    return 0
