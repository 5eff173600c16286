"""The one training loop every stage runs: step, log, run the hooks that are due, checkpoint, stop on a
non-finite loss.

A stage brings a :class:`TrainStep` (a host part, then a pure device part), a batch iterator with
``get_state()/set_state()``, and hooks (``training.hooks``: evaluation, keep-best, throughput ...); the loop
knows nothing of losses or models.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional, Protocol, Sequence

import jax

from tulu_jax.checkpoint import Checkpointer, non_finite_paths
from tulu_jax.errors import TuluError
from tulu_jax.training.hooks import Hook
from tulu_jax.training.metrics import MetricsLogger

log = logging.getLogger(__name__)

# Step metrics that must stay finite: the loss, and the gradient norm (a non-finite one makes a non-finite update).
GUARDED_METRICS = ("loss", "grad_norm")


class TrainingDivergedError(TuluError):
    """The loss became NaN or infinite."""


class TrainStep(Protocol):
    """One training step in two parts, run in this order by every process.

    ``host(state, batch) -> (inputs, host metrics)``: work on the host, such as placing a host batch on the mesh,
    or RLVR's rollout (sample, decode and score this process's rows, agree across hosts).
    ``device(state, inputs) -> (state, metrics)``: pure and jitted, the state donated.
    ``summarize(metrics) -> dict``: what gets logged of the summed step metrics.
    """

    def host(self, state: Any, batch: Any) -> tuple[Any, Mapping[str, float]]: ...

    def device(self, state: Any, inputs: Any) -> tuple[Any, Mapping[str, Any]]: ...

    def summarize(self, metrics: Mapping[str, float]) -> dict: ...


@dataclass(frozen=True)
class DeviceStep:
    """A :class:`TrainStep` whose host part only places the batch: ``function(state, to_device(batch))``."""

    function: Callable[[Any, Any], tuple[Any, Mapping[str, Any]]]
    to_device: Callable[[Any], Any] = lambda batch: batch
    summarize: Callable[[Mapping[str, float]], dict] = dict

    def host(self, state: Any, batch: Any) -> tuple[Any, dict]:
        return self.to_device(batch), {}

    def device(self, state: Any, inputs: Any) -> tuple[Any, Mapping[str, Any]]:
        return self.function(state, inputs)


def as_train_step(step: Any) -> TrainStep:
    """``step`` itself when it has a host and a device part; a plain ``state, batch -> state, metrics`` otherwise."""
    return step if hasattr(step, "host") and hasattr(step, "device") else DeviceStep(step)


@dataclass
class LoopSpec:
    """How long to train, where logs and checkpoints go, and the hooks; everything else is a hook."""

    total_steps: int
    logger: MetricsLogger
    log_every: int = 10
    checkpointer: Optional[Checkpointer] = None
    save_every: int = 0
    run_config: dict = field(default_factory=dict)  # saved with every checkpoint
    hooks: Sequence[Hook] = ()
    progress_bar: bool = True


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


def run_training(state: Any, step: TrainStep | Callable, batches: Iterator, spec: LoopSpec) -> Any:
    """Train from ``state.step`` up to ``spec.total_steps``; returns the final state (saved when configured).

    ``step`` is a :class:`TrainStep`, or a plain ``state, batch -> state, metrics``. A step's scalars are read
    after the NEXT step has been dispatched, so the accelerator never idles while the host fetches a batch;
    steps that log, run a hook or save (and the first and last) are read at once. A non-finite loss therefore
    stops the run at most one step later, always before a later state is evaluated or checkpointed, and the
    error names the step that produced it. Since a step's loss is computed before its update, the state itself
    is checked for NaN and inf before any hook sees it or it is saved: no checkpoint holds a diverged state.

    On resume, metrics logged after the restored step (by the interrupted run) are dropped from
    metrics.jsonl and purged from TensorBoard's view, since those steps are replayed and logged again.
    """
    step_parts = as_train_step(step)
    start = int(jax.device_get(state.step))
    logger = spec.logger
    if logger.enabled:
        logger.rewind(start)
    _warn_about_changed_config(start, spec)  # on every process: reading the saved config is an Orbax restore
    for hook in spec.hooks:
        started = hook.start(state, start)
        if started:
            logger.log(start, started, echo=False)
    bar = _progress_bar(start, spec) if spec.progress_bar and logger.enabled else None
    window_start, window_steps, compile_seconds = None, 0, None
    unread = None  # (step, host metrics, device metrics) of a dispatched step whose scalars were not read yet

    def read(number: int, host_metrics, device_metrics) -> dict:
        nonlocal window_steps
        fetched = jax.device_get(device_metrics)
        metrics = {key: float(value) for key, value in {**host_metrics, **fetched}.items()}
        _check_finite(number, metrics, spec.checkpointer)
        window_steps += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{step_parts.summarize(metrics).get('loss', metrics['loss']):.4g}", refresh=False)
        return metrics

    try:
        for number in range(start + 1, spec.total_steps + 1):  # ``number`` = optimizer steps done after this one
            batch = next(batches)
            for hook in spec.hooks:
                hook.on_batch(number, batch)
            began = time.perf_counter()
            inputs, host_metrics = step_parts.host(state, batch)
            state, device_metrics = step_parts.device(state, inputs)
            if unread is not None:
                read(*unread)
            unread = (number, host_metrics, device_metrics)
            logs = number % spec.log_every == 0 or number == spec.total_steps
            due = [hook for hook in spec.hooks if hook.due(number, spec.total_steps)]
            saves = spec.checkpointer is not None and (_due(spec.save_every, number) or number == spec.total_steps)
            if compile_seconds is not None and not (logs or due or saves):
                continue
            metrics = read(*unread)
            unread = None
            if compile_seconds is None:
                compile_seconds = time.perf_counter() - began
                logger.write(f"first step (with compilation) took {compile_seconds:.1f}s")
                window_start, window_steps = time.perf_counter(), 0  # throughput leaves the compiling step out
            if logs:
                elapsed = time.perf_counter() - window_start
                figures = _step_seconds(window_steps, elapsed)
                for hook in spec.hooks:
                    figures.update(hook.on_log(window_steps, elapsed))
                logger.log(number, {**step_parts.summarize(metrics), **figures}, echo=bar is None)
                window_start, window_steps = time.perf_counter(), 0
            if due or saves:
                _check_state_finite(number, state, spec.checkpointer)
            for hook in due:
                results = hook.after_step(number, state)
                if results:
                    logger.log(number, results)
            if saves:
                logger.sync()  # the lines of the saved steps are on storage before the checkpoint is
                spec.checkpointer.save(number, state, batches.get_state(), spec.run_config, force=True)
    finally:
        if bar is not None:
            bar.close()
        for hook in spec.hooks:
            hook.finish()
        if spec.checkpointer is not None:
            spec.checkpointer.wait()
    return state


def _due(every: int, step: int) -> bool:
    return bool(every) and step % every == 0


def _step_seconds(steps: int, seconds: float) -> dict:
    """Seconds per step since the last log (the compiling first step excluded); {} before any such step."""
    if steps == 0 or seconds <= 0:
        return {}
    return {"step_seconds": seconds / steps}


def _progress_bar(start: int, spec: LoopSpec):
    from tqdm import tqdm

    return tqdm(total=spec.total_steps, initial=start, desc="train", unit="step", dynamic_ncols=True)
