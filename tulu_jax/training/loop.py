"""The one training loop every stage runs: step, log, evaluate, checkpoint, stop on a non-finite loss.

A stage brings a jitted step (``state, batch -> state, metrics``), a batch iterator with
``get_state()/set_state()``, and a few callables; the loop knows nothing of losses or models.
"""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

import jax
import numpy as np

from tulu_jax.checkpoint import Checkpointer, non_finite_paths
from tulu_jax.errors import TuluError
from tulu_jax.training.metrics import MetricsLogger

log = logging.getLogger(__name__)

# Step metrics that must stay finite: the loss, and the gradient norm (a non-finite one makes a non-finite update).
GUARDED_METRICS = ("loss", "grad_norm")


class TrainingDivergedError(TuluError):
    """The loss became NaN or infinite."""


@dataclass
class LoopSpec:
    """Everything the loop needs besides the state and the step."""

    total_steps: int
    to_device: Callable[[Mapping[str, np.ndarray]], Mapping[str, jax.Array]]
    logger: MetricsLogger
    summarize: Callable[[Mapping[str, float]], dict] = dict  # summed step metrics -> what gets logged
    log_every: int = 10
    checkpointer: Optional[Checkpointer] = None
    save_every: int = 0
    run_config: dict = field(default_factory=dict)
    evaluate: Optional[Callable[[Any], dict]] = None  # params -> metrics on the held-out split
    eval_every: int = 0
    flops_per_step: float = 0.0
    peak_flops: float = 0.0
    tokens_per_step: int = 0
    batch_record: Optional[Path] = None  # batches.jsonl: step and fingerprint of every batch
    progress_bar: bool = True


def batch_fingerprint(batch: Mapping[str, np.ndarray]) -> int:
    """A CRC32 over the batch's arrays in key order (equal batches, equal fingerprints)."""
    crc = 0
    for key in sorted(batch):
        crc = zlib.crc32(np.ascontiguousarray(batch[key]).tobytes(), zlib.crc32(key.encode(), crc))
    return crc


def _diverged(what: str, checkpointer: Optional[Checkpointer]) -> TrainingDivergedError:
    """The error for a diverged step; every saved checkpoint passed the finiteness check, so the newest is good."""
    last_good = "none was saved"
    if checkpointer is not None:
        checkpointer.wait()
        steps = checkpointer.steps()
        last_good = f"step {steps[-1]} in {checkpointer.directory}" if steps else last_good
    return TrainingDivergedError(
        f"{what}; stopped without saving this state. Last good checkpoint: {last_good}. "
        "Lower optimizer.learning_rate or set optimizer.max_grad_norm, then resume."
    )


def _check_finite(step: int, metrics: Mapping[str, float], checkpointer: Optional[Checkpointer]) -> None:
    for key in GUARDED_METRICS:
        if key in metrics and not math.isfinite(metrics[key]):
            raise _diverged(f"the training {key} became {metrics[key]} at step {step}", checkpointer)


def _check_state_finite(step: int, state: Any, checkpointer: Optional[Checkpointer]) -> None:
    """The post-update state: a step whose loss (computed before its update) was finite can still leave NaNs."""
    bad = non_finite_paths(state)
    if bad:
        raise _diverged(f"the update of step {step} made the state non-finite (NaN or inf in {', '.join(bad)})",
                        checkpointer)


def _warn_about_changed_config(start: int, spec: "LoopSpec") -> None:
    """On resume, name the run-config values that differ from those saved with the checkpoint resumed."""
    if start == 0 or spec.checkpointer is None or not spec.run_config:
        return
    saved = spec.checkpointer.saved_config(start)
    if not saved:
        return
    if not spec.logger.enabled:
        return
    before, now = _flatten(saved), _flatten(json.loads(json.dumps(spec.run_config, default=str)))
    changed = sorted(key for key in set(before) | set(now) if before.get(key) != now.get(key))
    rates = [key for key in changed if key.endswith("learning_rate")]
    for key in rates:
        log.warning("resuming from step %d with %s=%r, but the checkpoint was trained with %r; the schedule goes "
                    "on from step %d at the new rate", start, key, now.get(key), before.get(key), start)
    others = [f"{key}: {before.get(key)!r} -> {now.get(key)!r}" for key in changed if key not in rates]
    if others:
        log.warning("resuming from step %d with a config that differs from the checkpoint's: %s", start,
                    "; ".join(others[:10]) + (f"; and {len(others) - 10} more" if len(others) > 10 else ""))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, Mapping):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: tree}


def run_training(state: Any, step_fn: Callable, batches: Iterator, spec: LoopSpec) -> Any:
    """Train from ``state.step`` up to ``spec.total_steps``; returns the final state (saved when configured).

    A step's scalars are read after the NEXT step has been dispatched, so the accelerator never idles
    while the host fetches a batch; steps that log, evaluate or save (and the first and last) are read
    at once. A non-finite loss therefore stops the run at most one step later, always before a later
    state is evaluated or checkpointed, and the error names the step that produced it. Since a step's loss
    is computed before its update, the state itself is checked for NaN and inf before it is evaluated or
    saved: no checkpoint holds a diverged state.

    On resume, metrics logged after the restored step (by the interrupted run) are dropped from
    metrics.jsonl and purged from TensorBoard's view, since those steps are replayed and logged again.
    """
    start = int(jax.device_get(state.step))
    logger = spec.logger
    if logger.enabled:
        logger.rewind(start)
    _warn_about_changed_config(start, spec)  # on every process: reading the saved config is an Orbax restore
    bar = _progress_bar(start, spec) if spec.progress_bar and logger.enabled else None
    record = spec.batch_record.open("a") if spec.batch_record is not None and logger.enabled else None
    window_start, window_steps, compile_seconds = None, 0, None
    unread = None  # (step, device metrics) of a dispatched step whose scalars were not read yet

    def read(step: int, device_metrics) -> dict:
        nonlocal window_steps
        metrics = {key: float(value) for key, value in jax.device_get(device_metrics).items()}
        _check_finite(step, metrics, spec.checkpointer)
        window_steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{spec.summarize(metrics).get('loss', metrics['loss']):.4g}", refresh=False)
        return metrics

    try:
        for step in range(start + 1, spec.total_steps + 1):  # ``step`` = optimizer steps done after this one
            batch = next(batches)
            if record is not None:
                record.write(json.dumps({"step": step, "fingerprint": batch_fingerprint(batch)}) + "\n")
                record.flush()
            began = time.perf_counter()
            state, device_metrics = step_fn(state, spec.to_device(batch))
            if unread is not None:
                read(*unread)
            unread = (step, device_metrics)
            logs = step % spec.log_every == 0 or step == spec.total_steps
            evaluates = spec.evaluate is not None and (_due(spec.eval_every, step) or step == spec.total_steps)
            saves = spec.checkpointer is not None and (_due(spec.save_every, step) or step == spec.total_steps)
            if compile_seconds is not None and not (logs or evaluates or saves):
                continue
            metrics = read(*unread)
            unread = None
            if compile_seconds is None:
                compile_seconds = time.perf_counter() - began
                logger.write(f"first step (with compilation) took {compile_seconds:.1f}s")
                window_start, window_steps = time.perf_counter(), 0  # throughput leaves the compiling step out
            if logs:
                elapsed = time.perf_counter() - window_start
                logger.log(step, {**spec.summarize(metrics), **_throughput(spec, window_steps, elapsed)},
                           echo=bar is None)
                window_start, window_steps = time.perf_counter(), 0
            if evaluates or saves:
                _check_state_finite(step, state, spec.checkpointer)
            if evaluates:
                eval_metrics = spec.evaluate(state.params)
                logger.log(step, {f"eval/{key}": value for key, value in eval_metrics.items()})
            if saves:
                logger.sync()  # the lines of the saved steps are on storage before the checkpoint is
                spec.checkpointer.save(step, state, batches.get_state(), spec.run_config, force=True)
    finally:
        if bar is not None:
            bar.close()
        if record is not None:
            record.close()
        if spec.checkpointer is not None:
            spec.checkpointer.wait()
    return state


def _due(every: int, step: int) -> bool:
    return bool(every) and step % every == 0


def _throughput(spec: LoopSpec, steps: int, seconds: float) -> dict:
    """tokens/s and MFU over the steps since the last log (the compiling first step excluded)."""
    if steps == 0 or seconds <= 0:
        return {}
    figures = {"step_seconds": seconds / steps}
    if spec.tokens_per_step:
        figures["tokens_per_second"] = spec.tokens_per_step * steps / seconds
    if spec.flops_per_step and spec.peak_flops:
        figures["mfu"] = spec.flops_per_step * steps / seconds / spec.peak_flops
    return figures


def _progress_bar(start: int, spec: LoopSpec):
    from tqdm import tqdm

    return tqdm(total=spec.total_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
