"""``tulu-jax dpo``: preference tuning (Tülu 3 stage 2, length-normalised DPO) from a YAML config with
key=value overrides."""

from __future__ import annotations

import argparse

from tulu_jax.commands._stage_arguments import add_stage_arguments, resume_flag

NAME = "dpo"
USES_DEVICES = True
HELP = "direct preference optimisation (dpo_norm, dpo, simpo, ipo, wpo) with cached reference log-probs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_stage_arguments(parser, "configs/tulu3_8b_dpo.yaml", "dpo.beta=5 dpo.reference=in_step")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.config import load_config
    from tulu_jax.stages.dpo import DPOConfig, run_dpo

    config = load_config(DPOConfig, args.config, args.overrides)
    result = run_dpo(config, resume=resume_flag(args))
    if result.eval_metrics:
        print("held-out: " + "  ".join(f"{key} {value:.4g}" for key, value in sorted(result.eval_metrics.items())))
    print(f"exported the preference-tuned model to {result.export_dir}")
    return 0
