"""The Tülu 3 configs planned on v5p and v6e slices: Markdown tables for tpu_scripts/README.md.

usage: python -m benchmarks.plan_tables [--only 8b_sft] [--out rows.jsonl] [--cache DIR]

Each row compiles every program of a stage for one slice with libtpu on this CPU machine (minutes for 8B,
tens of minutes for 70B/405B on 2 cores). Rows go one by one to ``--out`` (JSON lines) as they finish, so
an interrupted run keeps what it made; ``--render rows.jsonl`` prints the tables from such a file.

The rows write to a persistent compilation cache (``--cache``), but jax 0.10.2 cannot read an entry back
for libtpu's compile-only devices ("PjRtCompiler must be constructed with a Client to call
DeserializeLoadedExecutable": a warning, then a fresh compile), so today every row compiles afresh; the
cache pays off once jax can deserialize for a topology without a client.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# (row id, config, topology, overrides). The row id names the table it goes in.
ROWS = (
    ("8b_sft", "configs/tulu3_8b_sft.yaml", "v5p-128", ()),
    ("8b_dpo", "configs/tulu3_8b_dpo.yaml", "v5p-128", ()),
    ("8b_rlvr", "configs/tulu3_8b_rlvr.yaml", "v5p-128", ()),
    ("70b_sft", "configs/tulu3_70b_sft.yaml", "v5p-512", ()),
    ("70b_dpo", "configs/tulu3_70b_dpo.yaml", "v5p-512", ()),
    ("8b_sft_xla", "configs/tulu3_8b_sft.yaml", "v5p-128", ("model.overrides.attention=xla",)),
    ("8b_sft", "configs/tulu3_8b_sft.yaml", "v6e-64", ()),
    ("8b_dpo", "configs/tulu3_8b_dpo.yaml", "v6e-64", ()),
    ("8b_rlvr", "configs/tulu3_8b_rlvr.yaml", "v6e-64", ()),
    ("70b_sft_xla", "configs/tulu3_70b_sft.yaml", "v5p-512", ("model.overrides.attention=xla",)),
    ("70b_rlvr", "configs/tulu3_70b_rlvr.yaml", "v5p-512", ()),
    ("70b_sft", "configs/tulu3_70b_sft.yaml", "v6e-256", ()),
    ("70b_dpo", "configs/tulu3_70b_dpo.yaml", "v6e-256", ()),
    ("8b_grpo", "configs/tulu3_8b_grpo_rlvr.yaml", "v5p-128", ()),
    ("8b_dpo_in_step", "configs/tulu3_8b_dpo.yaml", "v5p-128", ("dpo.reference=in_step",)),
    ("405b_sft", "configs/tulu3_405b_sft.yaml", "v5p-1024", ()),
    ("405b_dpo", "configs/tulu3_405b_dpo.yaml", "v5p-1024", ()),
    ("405b_rlvr", "configs/tulu3_405b_rlvr.yaml", "v5p-1024", ()),
)

HEADER = ("| config | slice | mesh d×f×t | peak GiB / HBM (program) | temps GiB | fits | step s | MFU | tokens/s/chip "
          "| rollout s | host RAM GiB / VM | compile s |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def command(config: str, topology: str, overrides) -> str:
    return " ".join(["tulu-jax plan --config", config, "--topology", topology, *overrides])


def plan_row(config: str, topology: str, overrides) -> dict:
    from tulu_jax.errors import TuluError
    from tulu_jax.planning import plan_stage
    from tulu_jax.planning.chips import GIB

    started = time.perf_counter()
    record = {"config": config, "topology": topology, "overrides": list(overrides),
              "command": command(config, topology, overrides)}
    try:
        plan = plan_stage(config, topology, overrides)
    except TuluError as error:
        return {**record, "error": str(error)}
    peak = plan.peak
    sampler = [p for p in plan.programs if p.program.decode is not None]
    record.update(
        mesh="×".join(map(str, plan.mesh_shape)), fits=plan.fits, verdict=plan.verdict(),
        peak_gib=peak.total_bytes / GIB, peak_program=peak.name, hbm_gib=plan.hbm_bytes / GIB,
        temps_gib=peak.temp_bytes / GIB, step_seconds=plan.step_seconds, mfu=plan.mfu,
        step_seconds_upper=plan.step_seconds_upper, mfu_upper=plan.mfu_upper_time,
        tokens_per_second_per_chip=plan.tokens_per_second_per_chip,
        rollout_seconds=sum(plan.seconds(p) for p in sampler) if sampler else None,
        host_gib=plan.host.peak_bytes / GIB, host_ram_gib=plan.host.host_ram_bytes / GIB, host_fits=plan.host.fits,
        programs={p.name: {"arguments_gib": p.argument_bytes / GIB, "temps_gib": p.temp_bytes / GIB,
                           "resident_gib": p.resident_bytes / GIB, "peak_gib": p.total_bytes / GIB,
                           "seconds": plan.seconds(p), "compile_seconds": p.compile_seconds}
                  for p in plan.programs},
        wall_seconds=time.perf_counter() - started,
    )
    return record


def markdown_row(record: dict) -> str:
    name = Path(record["config"]).name + "".join(f" `{o}`" for o in record["overrides"])
    if "error" in record:
        return f"| {name} | {record['topology']} | | | | error: {record['error']} | | | | | | |"
    fits = "yes" if record["fits"] else "**no**"
    # A program the compiler refused reports only what it needs in all (its temporaries are not split out).
    temps = "refused" if not record["fits"] and record["temps_gib"] == 0 else f"{record['temps_gib']:.2f}"
    rollout = f"{record['rollout_seconds']:.1f}" if record.get("rollout_seconds") is not None else ""
    host = f"{record['host_gib']:.0f} / {record['host_ram_gib']:.0f}" + ("" if record["host_fits"] else " **over**")
    step, mfu = f"{record['step_seconds']:.2f}", f"{record['mfu']:.0%}"
    if "step_seconds_upper" in record:  # rows made since the planner reads HBM and ICI (issue 32): both bounds
        step += f" – {record['step_seconds_upper']:.2f}"
        mfu += f" – {record['mfu_upper']:.0%}"
    return (
        f"| {name} | {record['topology']} | {record['mesh']} | {record['peak_gib']:.1f} / {record['hbm_gib']:.0f} "
        f"({record['peak_program']}) | {temps} | {fits} | {step} "
        f"| {mfu} | {record['tokens_per_second_per_chip']:,.0f} | {rollout} | {host} "
        f"| {record['wall_seconds']:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=None, help="row ids to run (e.g. 8b_sft); repeatable")
    parser.add_argument("--topology", default=None, help="only rows on this slice")
    parser.add_argument("--out", type=Path, default=None, help="append each row as a JSON line to this file")
    parser.add_argument("--render", type=Path, default=None, help="print the table of a JSON-lines file and exit")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "tulu-jax" / "plan_compilation",
                        help="persistent compilation cache shared by the rows")
    args = parser.parse_args(argv)
    if args.render:
        records = [json.loads(line) for line in args.render.read_text().splitlines() if line.strip()]
        print("\n".join([HEADER, *map(markdown_row, records)]))
        return 0
    import jax

    args.cache.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(args.cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    print(HEADER, flush=True)
    for row_id, config, topology, overrides in ROWS:
        if (args.only and row_id not in args.only) or (args.topology and topology != args.topology):
            continue
        record = {"row": row_id, **plan_row(config, topology, overrides)}
        print(markdown_row(record), flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
