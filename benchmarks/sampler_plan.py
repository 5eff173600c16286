"""The RLVR sampler's programs alone, planned for a TPU slice: what one decode step moves per chip over ICI and
through HBM, and the rollout's time bounds with ICI counted (issue 27's before/after table).

usage: python -m benchmarks.sampler_plan --config configs/tulu3_8b_rlvr.yaml --topology v5p-128 [--out rows.jsonl]
       [key=value ...]

Compiles only the RLVR programs that are not the learner's (today the static sampler; a sampler with its own
layout adds its resharding program), so a 70B row costs one sampler compile instead of a whole plan.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def sampler_rows(config: str, topology: str, overrides=()) -> list[dict]:
    from tulu_jax.planning import load_plan_target, parse_topology
    from tulu_jax.planning.compile import compile_program, resolve_mesh
    from tulu_jax.planning.programs import stage_programs
    from tulu_jax.planning.step_time import program_time

    target = load_plan_target(config, overrides, "rlvr")
    slice_ = parse_topology(topology)
    mesh = resolve_mesh(target, slice_)
    rows = []
    for program in stage_programs(target, mesh):
        if program.name.startswith("learner"):
            continue
        started = time.perf_counter()
        compiled = compile_program(program, slice_.chip)
        timing = program_time(slice_.chip, slice_.num_chips, program.executed_flops, compiled.hlo)
        row = {"config": config, "topology": topology, "overrides": list(overrides), "program": program.name,
               "mesh": dict(getattr(program.mesh, "shape", {}) or mesh.shape),
               "peak_gib": compiled.total_bytes / 2**30, "compile_seconds": round(time.perf_counter() - started, 1),
               "seconds_lower": timing.lower, "seconds_upper": timing.upper, "bound_by": timing.bound_by,
               "terms": timing.terms}
        hlo = compiled.hlo
        if hlo is not None:
            row.update(hbm_bytes=hlo.hbm_bytes, ici_bytes=hlo.ici_bytes, ici_seconds=hlo.ici_seconds)
            loop = hlo.longest_loop
            if program.decode is not None and loop is not None:
                steps = max(loop.trips, 1)
                row.update(decode_steps=steps, decode_steps_bound_known=loop.trips_known,
                           step_ici_bytes=loop.ici_bytes / steps, step_hbm_bytes=loop.hbm_bytes / steps,
                           step_ici_ms=loop.ici_seconds / steps * 1e3,
                           step_hbm_ms=loop.hbm_bytes / steps / slice_.chip.hbm_bandwidth * 1e3,
                           step_fsdp_gathers=loop.fsdp_gathers, step_fsdp_gather_bytes=loop.fsdp_gather_bytes / steps)
        rows.append(row)
    return rows


def render(rows: list[dict]) -> str:
    lines = ["| config | slice | program | decode step ICI GB/chip (fsdp gathers) | decode step HBM GB/chip | "
             "step ms ICI / HBM | rollout s (lower – upper, bound) |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        step = ""
        if "step_ici_bytes" in row:
            step = (f"{row['step_ici_bytes'] / 1e9:.2f} ({row['step_fsdp_gathers']}) | {row['step_hbm_bytes'] / 1e9:.2f} | "
                    f"{row['step_ici_ms']:.2f} / {row['step_hbm_ms']:.2f}")
        else:
            step = " |  | "
        lines.append(f"| {Path(row['config']).name} | {row['topology']} | {row['program']} | {step} | "
                     f"{row['seconds_lower']:.1f} – {row['seconds_upper']:.1f} ({row['bound_by']}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--topology", required=True)
    parser.add_argument("--out", default=None, help="append JSON rows to this file")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    rows = sampler_rows(args.config, args.topology, args.overrides)
    if args.out:
        with open(args.out, "a") as out:
            for row in rows:
                out.write(json.dumps(row) + "\n")
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
