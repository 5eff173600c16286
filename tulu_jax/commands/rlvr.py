"""``tulu-jax rlvr --config configs/tulu3_8b_rlvr.yaml key=value ...``: the RLVR stage (PPO or GRPO)."""

from __future__ import annotations

from pathlib import Path

NAME = "rlvr"
USES_DEVICES = True
HELP = "reinforcement learning with verifiable rewards (Tülu 3 PPO, or GRPO) on RLVR prompts"


def add_arguments(parser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config (see configs/*rlvr*.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. objective.kl_beta=0.07")


def run(args) -> int:
    from tulu_jax.config import load_config, to_yaml
    from tulu_jax.stages.rlvr import run_from_config
    from tulu_jax.stages.rlvr_config import RLVRConfig

    config = load_config(RLVRConfig, args.config, args.overrides)
    print(to_yaml(config))
    history = run_from_config(config)
    if history:
        last = history[-1]
        print(f"finished at rollout step {last['step']}: reward {last['reward']:.3f}, accuracy {last['accuracy']:.3f}")
    return 0
