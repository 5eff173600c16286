"""DPO step cost per token against the SFT step, on the "small" preset, in the same process.

    python -m benchmarks.dpo_step [--quick]

Both steps see the same number of token rows per step: SFT trains on ``rows`` padded rows of ``length``
tokens, DPO on ``rows / 2`` pairs (chosen + rejected = ``rows`` rows, one forward) with cached reference
log-probs, so no reference model runs. Rows are full-length random tokens with the second half trained,
and both steps use the same chunked vocabulary projection and optimizer. Target: DPO's time per token at
most 1.1× SFT's (the extra work is only the per-pair loss and the row concatenation).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from tulu_jax.models import param_logical_axes, preset
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.stages import preference_training as pt
from tulu_jax.stages.dpo import BATCH_RANKS, DPOObjectiveConfig, make_dpo_loss
from tulu_jax.stages.sft import BATCH_KEYS as SFT_KEYS
from tulu_jax.stages.sft import SFTLossConfig, make_sft_loss
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule
from tulu_jax.training.state import create_train_state, init_params_sharded, state_shardings
from tulu_jax.training.step import build_train_step, jit_train_step

TARGET_RATIO = 1.1


def token_rows(rows: int, length: int, vocab: int, seed: int) -> dict:
    """Padded-row SFT arrays: random tokens, the second half of each row trained (labels), one segment."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(2, vocab, (rows, length)).astype(np.int32)
    labels = np.where(np.arange(length) >= length // 2, input_ids, -100).astype(np.int32)
    return {"input_ids": input_ids, "labels": labels, "segment_ids": np.ones((rows, length), np.int32),
            "positions": np.broadcast_to(np.arange(length, dtype=np.int32), (rows, length)).copy()}


def time_step(step_fn, state, batch, steps: int) -> tuple[float, object]:
    """Seconds per step after one compiling call."""
    state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    began = time.perf_counter()
    for _ in range(steps):
        state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - began) / steps, state


def run(quick: bool = False, rows: int | None = None, length: int | None = None, steps: int | None = None) -> dict:
    rows = rows or (4 if quick else 8)
    length = length or (128 if quick else 512)
    steps = steps or (2 if quick else 5)
    model = preset("small")
    mesh = make_mesh(MeshConfig())
    schedule = make_schedule(1e-5, ScheduleConfig(kind="constant", warmup_ratio=0.0), 1000)
    optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-5), schedule)
    shapes, axes = param_shapes(model), param_logical_axes(model)
    shardings = state_shardings(mesh, optimizer, shapes, axes)

    def fresh_state():
        from tulu_jax.models import init_params

        params = init_params_sharded(lambda key: init_params(model, key), 0, shardings.params)
        return create_train_state(params, optimizer, 0, shardings)

    data = token_rows(rows, length, model.vocab_size, seed=0)
    tokens = rows * length

    sft_loss = make_sft_loss(model, SFTLossConfig(reduction="sum", logits_chunk_size=1024))
    sft_step = jit_train_step(build_train_step(sft_loss, optimizer, schedule, 1, mesh=mesh), mesh, shardings, SFT_KEYS)
    sft_batch = pt.to_device_fn(mesh, SFT_KEYS)(data)
    sft_seconds, _ = time_step(sft_step, fresh_state(), sft_batch, steps)

    pairs = rows // 2
    pair_batch = {f"{side}_{key}": value[offset:offset + pairs] for side, offset in (("chosen", 0), ("rejected", pairs))
                  for key, value in data.items()}
    pair_batch["reference_chosen_logps"] = np.full(pairs, -100.0, np.float32)
    pair_batch["reference_rejected_logps"] = np.full(pairs, -110.0, np.float32)
    dpo_loss = make_dpo_loss(model, DPOObjectiveConfig(loss_type="dpo_norm", logits_chunk_size=1024))
    dpo_step = pt.jit_pair_step(build_train_step(dpo_loss, optimizer, schedule, 1, pt.global_pairs_context, mesh),
                                mesh, shardings, BATCH_RANKS)
    dpo_seconds, _ = time_step(dpo_step, fresh_state(), pt.to_device_fn(mesh, tuple(BATCH_RANKS))(pair_batch), steps)

    return {
        "preset": "small", "devices": len(jax.devices()), "rows_per_step": rows, "length": length, "steps": steps,
        "sft_tokens_per_second": tokens / sft_seconds,
        "dpo_tokens_per_second": tokens / dpo_seconds,
        "dpo_to_sft_time_per_token": dpo_seconds / sft_seconds,
        "target_ratio": TARGET_RATIO,
        "meets_target": dpo_seconds / sft_seconds <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short rows and few steps")
    args = parser.parse_args()
    for key, value in run(quick=args.quick).items():
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
