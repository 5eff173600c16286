"""``tulu-jax recipe``: SFT → DPO → RLVR end to end, with evaluation after every stage (the demo's main job)."""

from __future__ import annotations

import argparse

NAME = "recipe"
USES_DEVICES = True
HELP = "run the whole Tülu 3 recipe (SFT, DPO, RLVR) with held-out evaluation after each stage"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="recipe YAML, e.g. configs/demo_cpu.yaml")
    parser.add_argument("--quick", action="store_true", help="apply the config's quick_overrides (a smaller run)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. rlvr.training.steps=10")


def run(args: argparse.Namespace) -> int:
    from tulu_jax.config import load_config
    from tulu_jax.stages.recipe import RecipeConfig, run_recipe

    config = load_config(RecipeConfig, args.config, args.overrides)
    if args.quick:
        config = load_config(RecipeConfig, args.config, [*config.quick_overrides, *args.overrides])
    run_recipe(config)
    return 0
