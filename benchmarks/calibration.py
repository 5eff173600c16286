"""The planner's estimate beside MaxText's published measurements, at the shapes of those runs (issue 32).

usage: python -m benchmarks.calibration [--only NAME] [--out rows.jsonl]; --render rows.jsonl prints the table

Each row plans our SFT train step (forward, backward, AdamW: the step MaxText's pretraining runs) for the same
model, slice, sequence length and per-chip batch as a MaxText run, on MaxText's mesh (pure FSDP over every
chip). MaxText's runs of Llama 3.1 save layer inputs and projections to host memory (remat "custom" with
offload), which our model does not offer: those rows use full remat (and, where a chip's HBM would not hold
the layer inputs, micro-batches of one sequence per chip). The ratio is our estimate over their measurement:
how far the model is from a measured run, not a claim about our speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

# name, config, topology, overrides, MaxText's measured MFU and tokens/s/chip (None: not published), source
ROWS = (
    ("llama3.1-8b v6e-256 seq 8192", "configs/tulu3_8b_sft.yaml", "v6e-256",
     ("model.source=llama3.1-8b", "data.max_seq_len=8192", "loss.logits_chunk_size=2048", "training.batch_size=1024",
      "mesh.data=1", "mesh.fsdp=256", "mesh.tensor=1", "model.overrides.remat=full", "training.micro_batches=1"),
     0.4546, 7207, "MaxText README, Llama 3.1 8B on v6e-256 (per-device batch 4, FSDP, custom remat with offload)"),
    ("llama3.1-70b v6e-256 seq 8192", "configs/tulu3_70b_sft.yaml", "v6e-256",
     ("model.source=llama3.1-70b", "data.max_seq_len=8192", "loss.logits_chunk_size=2048", "training.batch_size=1024",
      "mesh.data=1", "mesh.fsdp=256", "mesh.tensor=1", "model.overrides.remat=full", "training.micro_batches=4"),
     0.5033, 960, "MaxText README, Llama 3.1 70B on v6e-256 (per-device batch 4, FSDP, custom remat with offload)"),
    ("llama2-70b v5p-512 seq 4096", "configs/tulu3_70b_sft.yaml", "v5p-512",
     ("model.source=llama3.1-70b", "model.overrides.vocab_size=32000", "data.max_seq_len=4096",
      "training.batch_size=1024", "mesh.data=1", "mesh.fsdp=256", "mesh.tensor=1", "model.overrides.remat=full",
      "training.micro_batches=1"),
     0.654, None, "MaxText README, Llama 2 70B on v5p-512 (per-device batch 4 as MaxText's llama2-70b-4096 configs, FSDP)"),
)


def plan_row(name, config, topology, overrides, mfu, tokens, source) -> dict:
    from tulu_jax.errors import TuluError
    from tulu_jax.planning import plan_stage
    from tulu_jax.planning.chips import GIB

    started = time.perf_counter()
    command = " ".join(["tulu-jax plan --config", config, "--topology", topology, *overrides])
    record = {"name": name, "command": command, "maxtext_mfu": mfu, "maxtext_tokens": tokens, "source": source}
    try:
        plan = plan_stage(config, topology, overrides)
    except TuluError as error:
        return {**record, "error": str(error)}
    step = plan.programs[-1]
    time_ = plan.time(step)
    record.update(
        fits=plan.fits, peak_gib=plan.peak.total_bytes / GIB, mfu_lower=plan.mfu, mfu_upper=plan.mfu_upper_time,
        tokens_lower=plan.tokens_per_second_per_chip, tokens_upper=plan.tokens_per_second_per_chip_upper_time,
        bound_by=time_.bound_by, terms=time_.terms, wall_seconds=round(time.perf_counter() - started, 1),
    )
    return record


def render(rows) -> str:
    lines = ["| run | MaxText MFU (measured) | ours: estimated MFU at the lower – upper bound of time | ours / MaxText | "
             "MaxText tokens/s/chip | ours: estimated tokens/s/chip | bound by | peak GiB |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['name']} | {row['maxtext_mfu']:.2%} | refused: {row['error']} | | | | | |")
            continue
        tokens = f"{row['maxtext_tokens']:,}" if row["maxtext_tokens"] else "not published"
        ratios = f"{row['mfu_lower'] / row['maxtext_mfu']:.2f} – {row['mfu_upper'] / row['maxtext_mfu']:.2f}"
        lines.append(
            f"| {row['name']} | {row['maxtext_mfu']:.2%} | {row['mfu_lower']:.1%} – {row['mfu_upper']:.1%} | "
            f"{ratios} | {tokens} | {row['tokens_lower']:,.0f} – {row['tokens_upper']:,.0f} | {row['bound_by']} | "
            f"{row['peak_gib']:.1f}{'' if row['fits'] else ' (does not fit)'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="a row whose name contains this")
    parser.add_argument("--out", default=None)
    parser.add_argument("--render", default=None, help="print the table from a rows file")
    args = parser.parse_args(argv)
    if args.render:
        with open(args.render) as rows:
            print(render([json.loads(line) for line in rows if line.strip()]))
        return 0
    rows = []
    for spec in ROWS:
        if args.only and args.only not in spec[0]:
            continue
        row = plan_row(*spec)
        rows.append(row)
        if args.out:
            with open(args.out, "a") as out:
                out.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
