"""What the recipe shows at the end: the accuracy table per stage and dataset, and the training curves PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

STAGE_ORDER = ("base", "sft", "dpo", "rlvr")


def read_metrics(path: Path) -> list[dict]:
    """The rows of a stage's ``metrics.jsonl`` (none when the file is missing)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def accuracy_table(evals: Mapping[str, dict], timings: Mapping[str, float]) -> str:
    """Rows per stage: held-out accuracy (pass@1) per dataset and overall, the change, and wall time."""
    datasets = sorted({name for summary in evals.values() for name in summary["datasets"]})
    header = ["stage", *datasets, "all", "Δ all", "wall time"]
    rows = [header]
    previous = None
    for stage in [s for s in STAGE_ORDER if s in evals]:
        summary = evals[stage]
        overall = summary["all"]["pass@1"]
        change = "" if previous is None else f"{overall - previous:+.3f}"
        seconds = timings.get(stage)
        rows.append([
            stage,
            *(f"{summary['datasets'][name]['pass@1']:.3f}" if name in summary["datasets"] else "-" for name in datasets),
            f"{overall:.3f}",
            change,
            "" if seconds is None else f"{seconds:.0f} s",
        ])
        previous = overall
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot_curves(path: Path, curves: Sequence[tuple[str, Sequence[dict], str]]) -> Path:
    """One panel per (title, rows, metric key): the metric against the step. Written with matplotlib (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4))
    for axis, (title, rows, key) in zip(axes, curves):
        points = [(row["step"], row[key]) for row in rows if key in row and row[key] is not None]
        if points:
            steps, values = zip(*points)
            axis.plot(steps, values, marker="." if len(points) < 40 else None)
        else:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.set_ylabel(key)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
