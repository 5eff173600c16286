"""The Tülu 3 configs planned on their intended TPU slices: a Markdown table for tpu_scripts/README.md.

usage: python -m benchmarks.plan_table [--only 8b] [--out table.md]
Each row compiles a config's train step for one slice with libtpu (minutes each for 70B/405B on a CPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tulu_jax.errors import TuluError
from tulu_jax.planning import plan_step
from tulu_jax.planning.chips import GIB

# (config, topology, overrides): each config on the slice its header names, and a second chip family.
ROWS = (
    ("configs/tulu3_8b_sft.yaml", "v5p-128", ()),
    ("configs/tulu3_8b_sft.yaml", "v6e-64", ()),
    ("configs/tulu3_70b_sft.yaml", "v5p-512", ()),
    ("configs/tulu3_405b_sft.yaml", "v5p-2048", ()),
)

HEADER = (
    "| config | slice | mesh d×f×t | compile s | args GiB | temps GiB | total / HBM GiB | fits | "
    "model FLOPs/step | step s (at peak) |\n|---|---|---|---|---|---|---|---|---|---|"
)


def row(config: str, topology: str, overrides: tuple[str, ...]) -> str:
    try:
        plan = plan_step(config, topology, overrides)
    except TuluError as error:
        return f"| {Path(config).name} | {topology} | | | | | | error: {error} | | |"
    compiled = plan.compiled
    fits = "yes" if plan.fits else (f"no, over by {plan.over_by_bytes / GIB:.1f} GiB" if plan.over_by_bytes else "no")
    return (
        f"| {Path(config).name} | {topology} | {'×'.join(map(str, compiled.mesh_shape))} | {compiled.compile_seconds:.0f} "
        f"| {compiled.argument_bytes / GIB:.2f} | {compiled.temp_bytes / GIB:.2f} "
        f"| {compiled.total_bytes / GIB:.1f} / {plan.hbm_bytes / GIB:.0f} | {fits} "
        f"| {plan.estimated_flops['total']:.2e} | {plan.step_seconds:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="only configs whose file name contains this (e.g. 8b)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    lines = [HEADER]
    print(HEADER, flush=True)
    for config, topology, overrides in ROWS:
        if args.only and args.only not in Path(config).name:
            continue
        lines.append(row(config, topology, overrides))
        print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
