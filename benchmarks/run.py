"""Run every benchmark (each ours vs its reference in the same process) and write BENCHMARKS.md.

    python -m benchmarks.run [--quick] [--only sft_step generation ...] [--out BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone

BENCHMARKS = ("sft_step", "dpo_step", "generation", "rlvr_step", "decontamination", "data_pipeline",
              "compile_time")


def machine() -> str:
    import jax

    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, jax {jax.__version__} on {jax.default_backend()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small settings of each benchmark")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--out", default="BENCHMARKS.md")
    args = parser.parse_args(argv)
    results = {}
    for name in args.only or BENCHMARKS:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        results[name] = importlib.import_module(f"benchmarks.{name}").run(quick=args.quick)
        results[name]["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv)
    lines = [
        "# Benchmarks", "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {machine()}.", "",
        f"Command: `{command.strip()}`. Each benchmark runs ours and its reference alternately in one process,",
        "excludes compilation/warm-up (reported separately) and reports the median of its repetitions.", "",
    ]
    for name, result in results.items():
        lines += [f"## {name}", "", "```json", json.dumps(result, indent=2, default=str), "```", ""]
    with open(args.out, "w") as handle:
        handle.write("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
