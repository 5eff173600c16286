"""Compile time of the SFT train step: 8 vs 32 layers of the "small" preset, layers scanned (default) or unrolled.

    python -m benchmarks.compile_time [--quick] [--unrolled 8 32]

The step is built exactly as ``benchmarks.sft_step.jax_stepper`` builds it (batch 4 × 512, float32, AdamW,
one device) and compiled ahead of time from abstract inputs: ``lower`` (trace + StableHLO) and ``compile``
(XLA) are timed separately, and no parameters are allocated. The 32-layer model is the small preset with
only ``num_layers`` changed. With ``scan_layers=True`` the layer is traced and compiled once whatever the
depth, so the target is a 32/8 ratio below 1.5; the unrolled figures show what scanning saves. A tiny
model's step is compiled first so that one-time backend start-up is not charged to the first measurement.
Finally the 8-layer step is run three times to check it compiles exactly once (``compile_count``); the
first call minus the later calls' median is a second, independent estimate of its compile time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp

from benchmarks.sft_step import BATCH, LENGTH, jax_stepper, jax_train_step, synthetic_batch
from tulu_jax.models import preset
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import activate
from tulu_jax.stages.sft import BATCH_KEYS
from tulu_jax.training.state import abstract_state

DEPTHS = (8, 32)
TARGET_RATIO = 1.5


def aot_compile_seconds(config) -> dict[str, float]:
    """Seconds to lower and to compile a freshly built step for ``config`` (no cache shared with other builds)."""
    step, optimizer, shardings = jax_train_step(config)
    state = abstract_state(optimizer, param_shapes(config), shardings)
    batch = {key: jax.ShapeDtypeStruct((BATCH, LENGTH), jnp.int32) for key in BATCH_KEYS}
    with activate(step.mesh):
        start = time.perf_counter()
        lowered = step.jitted.lower(state, batch)
        lowered_at = time.perf_counter()
        lowered.compile()
        done = time.perf_counter()
    return {"lower_seconds": lowered_at - start, "compile_seconds": done - lowered_at, "total_seconds": done - start}


def median_compile(config, reps: int) -> dict:
    """The median over ``reps`` fresh builds of each figure, and every total."""
    runs = [aot_compile_seconds(config) for _ in range(reps)]
    result = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result["totals"] = [run["total_seconds"] for run in runs]
    return result


def compiles_once(steps: int = 3) -> dict:
    """Run the 8-layer scanned step ``steps`` times; its compile count and each call's seconds."""
    config = preset("small")
    run_one, step = jax_stepper(config, synthetic_batch(config.vocab_size))
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        run_one()  # returns a float loss, so the step has finished
        seconds.append(time.perf_counter() - start)
    later = statistics.median(seconds[1:])
    return {"steps": steps, "compile_count": step.compile_count, "call_seconds": seconds,
            "first_call_minus_later_median_seconds": seconds[0] - later}


def run(quick: bool = False, unrolled: tuple[int, ...] | None = None) -> dict:
    """Compile seconds per depth and layout, the scanned 32/8 ratio against the target, and the compile count."""
    unrolled = DEPTHS if unrolled is None else tuple(unrolled)
    reps = 1 if quick else 2
    start = time.perf_counter()
    aot_compile_seconds(preset("tiny"))
    warmup_seconds = time.perf_counter() - start

    scanned = {layers: median_compile(preset("small", num_layers=layers, scan_layers=True), reps) for layers in DEPTHS}
    unrolled_results = {layers: median_compile(preset("small", num_layers=layers, scan_layers=False), reps)
                        for layers in unrolled}
    once = compiles_once()
    if once["compile_count"] != 1:
        raise AssertionError(f"the SFT step compiled {once['compile_count']} times in {once['steps']} steps")

    ratio = scanned[DEPTHS[1]]["total_seconds"] / scanned[DEPTHS[0]]["total_seconds"]
    result = {
        "preset": "small", "batch": BATCH, "length": LENGTH, "dtype": "float32", "reps_per_compile": reps,
        "warmup_tiny_compile_seconds": warmup_seconds,
        "scan_layers": {str(layers): figures for layers, figures in scanned.items()},
        "unrolled": {str(layers): figures for layers, figures in unrolled_results.items()},
        "unrolled_not_measured": [layers for layers in DEPTHS if layers not in unrolled],
        "ratio_32_over_8": ratio, "target_ratio": TARGET_RATIO, "meets_target": ratio < TARGET_RATIO,
        "compile_once": once,
    }
    if all(layers in unrolled_results for layers in DEPTHS):
        result["unrolled_ratio_32_over_8"] = (unrolled_results[DEPTHS[1]]["total_seconds"]
                                              / unrolled_results[DEPTHS[0]]["total_seconds"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one compile per configuration instead of the median of two")
    parser.add_argument("--unrolled", type=int, nargs="*", choices=DEPTHS, default=None,
                        help="depths also compiled unrolled (default 8 32)")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, unrolled=args.unrolled), indent=2))


if __name__ == "__main__":
    main()
