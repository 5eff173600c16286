"""Continuous batching over a paged KV cache vs the static sampler, on an RL-shaped workload.

    python -m benchmarks.continuous_batching [--quick] [--reps N]

RL responses are skewed: most stop early, a few run to the limit, and a static batch decodes every row
until its longest row stops. The workload forces that schedule on a random model (a random model never
stops by itself): 90% of the rows stop at 10–30% of ``max_new_tokens`` and 8% (at least one) run to the
limit, the rest in between. The continuous sampler takes each row's limit as an input; the static sampler,
which has no per-row limit, runs every row to ``max_new_tokens``, exactly what it does when one row in
its batch never emits a stop token. Both are greedy on the same float32 weights; the generated tokens
counted are each row's limit (a static row's tokens past it are the padding work continuous batching
saves). Reported: tokens/s of each (median of ``reps`` alternating calls, compilation timed apart), their
ratio, KV-cache bytes (the static cache rows × (prompt + new) slots against the page pools, and the pages
actually used at the peak), and whether every row's greedy tokens are identical up to its limit.

Two static baselines run in the same process:

- ``static`` decodes all rows in one batch, as ``rollout.sampler: static`` does. Its KV cache holds every
  row at full length; on this CPU a step's cost grows with the rows, so its tokens/s is flattered.
- ``static_same_width`` decodes the rows in chunks of ``slots`` rows, the width the continuous sampler keeps
  in flight, which is what a static sampler must do when the KV cache of all rows does not fit. Each chunk
  stops when its longest row does (a static batch stops once every row has stopped), emulated by compiling
  the static sampler for that chunk's longest limit. Per-step costs are then equal, and the ratio measures
  what continuous batching removes: steps spent on rows that already stopped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from tulu_jax.generation import SamplingConfig, continuous, sampling_layout
from tulu_jax.generation.sampler import compiled_sampler
from tulu_jax.models import init_params, preset

GREEDY = SamplingConfig(temperature=0.0)


def workload(rows: int, max_new: int, seed: int = 0) -> np.ndarray:
    """Per-row response limits with RL's skew: 90% in [10%, 30%] of max_new, 8% at max_new, the rest between."""
    rng = np.random.default_rng(seed)
    limits = rng.integers(max(1, max_new // 10), max(2, (3 * max_new) // 10) + 1, rows)
    full = max(1, round(0.08 * rows))
    middle = rows - round(0.9 * rows) - full
    limits[:full] = max_new
    if middle > 0:
        limits[full:full + middle] = rng.integers((3 * max_new) // 10, max_new, middle)
    return rng.permutation(limits).astype(np.int32)


def static_kv_bytes(config, rows: int, prompt: int, new: int) -> int:
    itemsize = jnp.dtype(config.compute_dtype).itemsize
    return 2 * config.num_layers * rows * (prompt + new) * config.num_kv_heads * config.resolved_head_dim * itemsize


def _timed(function, *arguments):
    started = time.perf_counter()
    output = function(*arguments)
    jax.block_until_ready(output.tokens)
    return time.perf_counter() - started, output


def _timed_chunks(function):
    started = time.perf_counter()
    outputs = function()
    jax.block_until_ready([output.tokens for output in outputs])
    return time.perf_counter() - started, outputs


def run(quick: bool = False, reps: int = 3, slots: int = 0, rows: int = 0) -> dict:
    default_rows, prompt, new = (32, 16, 64) if quick else (64, 32, 256)
    rows = rows or default_rows
    config = preset("small", scan_layers=False, max_position_embeddings=1024)
    params = init_params(config, jax.random.PRNGKey(0))
    rng = np.random.default_rng(1)
    prompt_ids = jnp.asarray(rng.integers(2, config.vocab_size, (rows, prompt)), jnp.int32)
    prompt_mask = jnp.ones((rows, prompt), jnp.int32)
    limits = workload(rows, new)
    key = jax.random.PRNGKey(0)
    decode = continuous.DecodeSlots(slots=slots or rows // 8)

    static = compiled_sampler(config, GREEDY, new, (), 0, False, None)
    sampler_params = sampling_layout.to_sampling_layout(params, config, None)
    paged = continuous.compiled_continuous_sampler(sampling_layout.sampling_model(config), GREEDY, new, (), 0, decode,
                                                   1, None)
    slots, refill = decode.resolve(rows)
    chunks = [slice(start, start + slots) for start in range(0, rows, slots)]
    chunk_samplers = {}
    for chunk in chunks:
        longest = int(limits[chunk].max())
        if longest not in chunk_samplers:
            chunk_samplers[longest] = compiled_sampler(config, GREEDY, longest, (), 0, False, None)

    def static_same_width():
        return [chunk_samplers[int(limits[chunk].max())](params, prompt_ids[chunk], prompt_mask[chunk], key)
                for chunk in chunks]

    static_call = lambda: static(params, prompt_ids, prompt_mask, key)  # noqa: E731
    paged_call = lambda: paged(sampler_params, prompt_ids, prompt_mask, key, jnp.asarray(limits))  # noqa: E731
    static_compile, static_out = _timed(static_call)
    paged_compile, paged_out = _timed(paged_call)
    width_compile, width_out = _timed_chunks(static_same_width)
    static_times, paged_times, width_times = [], [], []
    for _ in range(reps):
        static_times.append(_timed(static_call)[0])
        paged_times.append(_timed(paged_call)[0])
        width_times.append(_timed_chunks(static_same_width)[0])

    tokens = int(limits.sum())
    static_tokens, paged_tokens = np.asarray(static_out.tokens), np.asarray(paged_out.tokens)
    width_tokens = [np.asarray(output.tokens) for output in width_out]
    identical = all(np.array_equal(static_tokens[row, :limit], paged_tokens[row, :limit])
                    for row, limit in enumerate(limits))
    identical_width = all(np.array_equal(width_tokens[row // slots][row % slots, :limit], paged_tokens[row, :limit])
                          for row, limit in enumerate(limits))
    pool_bytes = continuous.kv_cache_bytes(config, rows, prompt, new, decode, 1)
    page_bytes = pool_bytes // (slots * -(-(prompt + new) // decode.page_size) + 1)
    static_bytes = static_kv_bytes(config, rows, prompt, new)
    static_rate = tokens / statistics.median(static_times)
    paged_rate = tokens / statistics.median(paged_times)
    width_rate = tokens / statistics.median(width_times)
    width_bytes = static_kv_bytes(config, slots, prompt, new)
    return {
        "model": "small preset (hidden 512, 8 layers, 8/4 heads), float32, random weights",
        "workload": {"rows": rows, "prompt_tokens": prompt, "max_new_tokens": new,
                     "response_tokens": tokens, "rows_at_limit": int((limits == new).sum()),
                     "rows_within_30_percent": int((limits <= (3 * new) // 10).sum())},
        "continuous": {"slots": slots, "refill": refill, "page_size": decode.page_size,
                       "decode_steps": int(paged_out.steps), "tokens_per_s": round(paged_rate, 1),
                       "compile_and_first_call_s": round(paged_compile, 2)},
        "static": {"decode_steps": new, "tokens_per_s": round(static_rate, 1),
                   "compile_and_first_call_s": round(static_compile, 2)},
        "static_same_width": {"rows_per_chunk": slots, "chunks": len(chunks),
                              "decode_steps": sum(int(limits[chunk].max()) for chunk in chunks),
                              "tokens_per_s": round(width_rate, 1), "kv_cache_bytes": width_bytes,
                              "compile_and_first_call_s": round(width_compile, 2)},
        "speedup": round(paged_rate / static_rate, 2),
        "speedup_same_width": round(paged_rate / width_rate, 2),
        "kv_cache_bytes": {"static": static_bytes, "continuous_pool": pool_bytes,
                           "continuous_peak_in_use": int(paged_out.peak_pages) * page_bytes,
                           "pool_over_static": round(pool_bytes / static_bytes, 3)},
        "peak_in_use_over_static_same_width": round(int(paged_out.peak_pages) * page_bytes / width_bytes, 3),
        "greedy_tokens_identical_row_for_row": identical and identical_width,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--slots", type=int, default=0, help="decode slots (default: an eighth of the rows)")
    parser.add_argument("--rows", type=int, default=0, help="rollout rows (default 64; --quick: 32)")
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.reps, args.slots, args.rows), indent=2))


if __name__ == "__main__":
    main()
