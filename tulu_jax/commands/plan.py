"""``tulu-jax plan``: compile a stage's train step for a TPU slice on this machine and report its fit.

Nothing is allocated: the step is compiled for libtpu's compile-only devices with abstract inputs, so an
8B or 405B plan runs on a laptop. Needs the ``libtpu`` package (``pip install -e .[tpu-plan]``).
"""

from __future__ import annotations

from pathlib import Path

NAME = "plan"
HELP = "compile a stage's train step for a TPU topology (e.g. v5p-64) and report memory, FLOPs and MFU"


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="stage config YAML (e.g. configs/tulu3_8b_sft.yaml)")
    parser.add_argument(
        "--topology", required=True, action="append",
        help="TPU slice: v4-N, v5e-N, v5p-N, v6e-N or family:AxB[xC]; repeat to plan several",
    )
    parser.add_argument("--stage", default=None, help="stage of the config (default: from the file name, else sft)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. training.batch_size=256)")


def run(args) -> int:
    from tulu_jax.planning import plan_step, render

    plans = []
    for name in args.topology:
        plan = plan_step(args.config, name, args.overrides, args.stage)
        print(render(plan), flush=True)
        plans.append(plan)
    return 0 if all(plan.fits for plan in plans) else 3
