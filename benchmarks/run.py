"""Run every benchmark (each ours vs its reference in the same process) and write BENCHMARKS.md.

    python -m benchmarks.run [--quick] [--only sft_step generation ...] [--out BENCHMARKS.md]

With ``--only``, the other benchmarks' sections of an existing output file are kept as they were; every
section records when, where and with which command it was measured.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import sys
import time
from datetime import datetime, timezone

BENCHMARKS = ("sft_step", "dpo_step", "generation", "continuous_batching", "rlvr_step", "decontamination",
              "data_pipeline", "compile_time", "host_memory")
# Run only by their own command (hours on a CPU at full size; `--write` puts the section here); run.py keeps
# their sections as they are.
OWN_COMMAND = ("real_model_eval",)
SECTION = re.compile(r"^## (\w+)\n\n```json\n(.*?)\n```", re.S | re.M)


def earlier_results(path: str) -> dict[str, dict]:
    """The JSON sections of an earlier BENCHMARKS.md, by benchmark name (empty when there is none)."""
    if not os.path.isfile(path):
        return {}
    with open(path) as handle:
        return {name: json.loads(body) for name, body in SECTION.findall(handle.read())
                if name in BENCHMARKS + OWN_COMMAND}


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
    command = "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv)
    results = {name: result for name, result in earlier_results(args.out).items()
               if args.only or name in OWN_COMMAND}
    for name in args.only or BENCHMARKS:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        result = importlib.import_module(f"benchmarks.{name}").run(quick=args.quick)
        result["benchmark_seconds"] = round(time.perf_counter() - started, 1)
        result["measured"] = measured(command)
        results[name] = result
    write_results(results, args.out)
    print(f"wrote {args.out}")
    return 0


def measured(command: str) -> str:
    return f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; {command.strip()}"


def write_results(results: dict[str, dict], path: str) -> None:
    lines = [
        "# Benchmarks", "",
        "Written by `python -m benchmarks.run` (`make bench`). Each benchmark runs ours and its reference",
        "alternately in one process, excludes compilation/warm-up (reported separately) and reports the median",
        "of its repetitions; its `measured` field says when, on what machine and with which command.", "",
    ]
    for name in BENCHMARKS + OWN_COMMAND:
        if name in results:
            lines += [f"## {name}", "", "```json", json.dumps(results[name], indent=2, default=str), "```", ""]
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
