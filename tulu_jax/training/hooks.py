"""Hooks: what the loop runs beside the steps, so the loop itself never grows a field for a new concern.

A hook may act at four moments, each a method with a do-nothing default:
  ``start(state, step)`` once before the first step (after a resume), returning metrics to log at ``step``;
  ``on_batch(step, batch)`` for every host batch before its step;
  ``on_log(steps, seconds)`` for every log line, returning figures to add to it (over the steps since the last);
  ``after_step(step, state)`` after each step it is ``due`` at, returning metrics to log at that step.
The loop checks the state for NaN and inf before any ``after_step`` runs, and saves its checkpoint after them,
so what a hook logs is on storage before the checkpoint of its step is.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np


class Hook:
    """A do-nothing hook; subclasses override the moments they act at."""

    def start(self, state: Any, step: int) -> dict:
        return {}

    def on_batch(self, step: int, batch: Mapping[str, Any]) -> None:
        pass

    def on_log(self, steps: int, seconds: float) -> dict:
        return {}

    def due(self, step: int, total_steps: int) -> bool:
        return False

    def after_step(self, step: int, state: Any) -> dict:
        return {}

    def finish(self) -> None:
        pass


def due_every(every: int, step: int, total_steps: int) -> bool:
    """Every ``every`` steps (0: never) and at the last step."""
    return step == total_steps or (every > 0 and step % every == 0)


class Evaluation(Hook):
    """``evaluate(params) -> metrics`` every ``every`` steps and at the last, logged as ``eval/<name>``.

    ``last`` keeps the latest ``(step, metrics)``, so whoever needs the final evaluation does not run it twice.
    """

    def __init__(self, evaluate: Callable[[Any], dict], every: int):
        self.evaluate, self.every = evaluate, every
        self.last: Optional[tuple[int, dict]] = None

    def due(self, step: int, total_steps: int) -> bool:
        return due_every(self.every, step, total_steps)

    def run(self, step: int, params: Any) -> dict:
        metrics = self.evaluate(params)
        self.last = (step, metrics)
        return {f"eval/{key}": value for key, value in metrics.items()}

    def after_step(self, step: int, state: Any) -> dict:
        return self.run(step, state.params)

    def at(self, step: int, params: Any) -> dict:
        """The metrics of ``params`` at ``step``: the ones the loop logged there, or a fresh evaluation."""
        if self.last is None or self.last[0] != step:
            self.run(step, params)
        return self.last[1]


class Throughput(Hook):
    """Adds tokens/s and MFU to every log line (the step time itself is the loop's)."""

    def __init__(self, tokens_per_step: int = 0, flops_per_step: float = 0.0, peak_flops: float = 0.0):
        self.tokens_per_step, self.flops_per_step, self.peak_flops = tokens_per_step, flops_per_step, peak_flops

    def on_log(self, steps: int, seconds: float) -> dict:
        if steps == 0 or seconds <= 0:
            return {}
        figures = {}
        if self.tokens_per_step:
            figures["tokens_per_second"] = self.tokens_per_step * steps / seconds
        if self.flops_per_step and self.peak_flops:
            figures["mfu"] = self.flops_per_step * steps / seconds / self.peak_flops
        return figures


def batch_fingerprint(batch: Mapping[str, np.ndarray]) -> int:
    """A CRC32 over the batch's arrays in key order (equal batches, equal fingerprints)."""
    crc = 0
    for key in sorted(batch):
        crc = zlib.crc32(np.ascontiguousarray(batch[key]).tobytes(), zlib.crc32(key.encode(), crc))
    return crc


class BatchRecord(Hook):
    """Appends ``{"step", "fingerprint"}`` of every batch to ``path`` (batches.jsonl: resume checks)."""

    def __init__(self, path: Path):
        self.path, self.file = path, None

    def on_batch(self, step: int, batch: Mapping[str, Any]) -> None:
        if self.file is None:
            self.file = open(self.path, "a")
        self.file.write(json.dumps({"step": step, "fingerprint": batch_fingerprint(batch)}) + "\n")
        self.file.flush()

    def finish(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
