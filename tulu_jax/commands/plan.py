"""``tulu-jax plan``: compile a stage's programs for a TPU slice on this machine and report their fit.

Nothing is allocated: the programs are compiled for libtpu's compile-only devices with abstract inputs, so
an 8B or 405B plan runs on a laptop. Needs the ``libtpu`` package (``pip install -e .[tpu-plan]``).
Exit status 0 when every plan fits, 3 when one does not (its verdict says by how much, in which program,
and what to change). ``--tune`` searches remat, mesh and micro-batches instead (``planning.tune``) and prints
a ranked table and the winning overrides; status 3 when nothing fits.
"""

from __future__ import annotations

from pathlib import Path

NAME = "plan"
HELP = "compile a stage's programs for a TPU topology (e.g. v5p-64) and report memory, time, MFU and host RAM"
DOES_NOT_FIT = 3


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, type=Path, help="stage config YAML (e.g. configs/tulu3_8b_sft.yaml)")
    parser.add_argument(
        "--topology", required=True, action="append",
        help="TPU slice: v4-N, v5e-N, v5p-N, v6e-N or family:AxB[xC]; repeat to plan several",
    )
    parser.add_argument("--stage", default=None,
                        help="sft, dpo, rm or rlvr (default: from the file name, e.g. tulu3_8b_dpo.yaml is dpo)")
    parser.add_argument("--model", default=None,
                        help="a preset (e.g. llama3.1-70b) whose shapes to plan with when the config's model "
                             "source is not on this machine and no config beside it produces it")
    parser.add_argument("--tune", action="store_true",
                        help="search remat, mesh (data×fsdp×tensor) and micro-batches at the same batch and sequence "
                             "length; print a ranked table and the winning overrides")
    parser.add_argument("--tune-include", action="append", default=[], metavar="'K=V K=V'",
                        help="with --tune: also plan these overrides (quoted, space-separated), e.g. earlier settings")
    parser.add_argument("--tune-budget-minutes", type=float, default=25.0,
                        help="with --tune: start no compile after this many minutes (default 25)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value (e.g. training.micro_batches=2)")


def run(args) -> int:
    from tulu_jax.planning import load_plan_target, parse_topology, plan_stage, render

    if args.tune:
        from tulu_jax.planning.tune import render_tune, tune

        status = 0
        for name in args.topology:
            result = tune(str(args.config), parse_topology(name), args.overrides, args.stage, args.model,
                          include=[text.split() for text in args.tune_include],
                          budget_minutes=args.tune_budget_minutes, report=lambda line: print("  " + line, flush=True))
            print(render_tune(result), flush=True)
            status = status or (0 if result.best is not None else DOES_NOT_FIT)
        return status

    target = load_plan_target(args.config, args.overrides, args.stage, args.model)
    plans = []
    for name in args.topology:
        plan = plan_stage(target, name)
        print(render(plan), flush=True)
        plans.append(plan)
    return 0 if all(plan.fits for plan in plans) else DOES_NOT_FIT
