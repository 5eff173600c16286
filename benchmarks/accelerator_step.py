"""SFT step and generation on whatever accelerator JAX finds, against transformers + torch on the same device.

    python -m benchmarks.accelerator_step [--size auto|tiny|1b] [--reps N]

``1b`` is the Llama 3.2 1B shape (16 layers, hidden 2048, 32/8 heads of 64, MLP 8192, vocab 128256, tied
embeddings) with random weights, in bfloat16: our step keeps float32 params and computes in bfloat16, torch
keeps float32 params under ``autocast(bfloat16)``; generation runs bfloat16 weights on both sides. ``auto``
is ``1b`` on an accelerator and ``tiny`` (the test preset) on a CPU, so the script stays tested. Our side
runs on one device with ``model.attention=auto`` (splash on TPU). The torch side runs where torch can reach
the same device: CUDA for a JAX GPU, the CPU for a JAX CPU; on a TPU (no torch_xla here) it is skipped and
says so. Steps alternate between the sides; warm-up calls are excluded and medians reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from tulu_jax.generation import SamplingConfig, generate
from tulu_jax.models import LlamaConfig, RopeScaling, init_params, param_logical_axes, preset
from tulu_jax.models.layers import attention_implementation
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.stages.sft import BATCH_KEYS, SFTLossConfig, global_token_count, make_sft_loss
from tulu_jax.training.flops import flops_per_step, measured_matmul_flops
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule
from tulu_jax.training.state import create_train_state, state_shardings
from tulu_jax.training.step import build_train_step, jit_train_step

LLAMA32_1B = LlamaConfig(
    vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32, num_kv_heads=8,
    head_dim=64, rope_theta=500000.0, tie_word_embeddings=True, max_position_embeddings=131072,
    rope_scaling=RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=8192),
)
# size -> (model, SFT batch, SFT length, generation batch, prompt length, new tokens)
SIZES = {
    "1b": (LLAMA32_1B, 4, 2048, 8, 128, 256),
    "tiny": (preset("tiny"), 2, 128, 2, 16, 16),
}
LEARNING_RATE = 1e-5


def torch_device(platform: str) -> Optional[str]:
    """The torch device on the same hardware as JAX's ``platform``, or None where torch cannot reach it."""
    import torch

    if platform == "cpu":
        return "cpu"
    if platform == "gpu" and torch.cuda.is_available():
        return "cuda"
    return None


def jax_sft_stepper(config: LlamaConfig, batch: dict) -> Callable[[], float]:
    """One jitted SFT step (AdamW, token-mean loss) on the first device; returns a run-one-step closure."""
    mesh = make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])
    schedule = make_schedule(LEARNING_RATE, ScheduleConfig(kind="constant", warmup_steps=0), 1000)
    optimizer = make_optimizer(OptimizerConfig(learning_rate=LEARNING_RATE, max_grad_norm=1.0), schedule)
    shardings = state_shardings(mesh, optimizer, param_shapes(config), param_logical_axes(config))
    loss_fn = make_sft_loss(config, SFTLossConfig(reduction="mean", logits_chunk_size=1024))
    step = jit_train_step(build_train_step(loss_fn, optimizer, schedule, 1, global_token_count, mesh),
                          mesh, shardings, BATCH_KEYS)
    holder = {"state": create_train_state(jax.device_get(init_params(config, jax.random.PRNGKey(0))),
                                          optimizer, 0, shardings)}
    device_batch = {key: jnp.asarray(value) for key, value in batch.items()}

    def run_one() -> float:
        holder["state"], metrics = step(holder["state"], device_batch)
        return float(metrics["loss"])  # the host read waits for the step

    return run_one


def torch_sft_stepper(config: LlamaConfig, batch: dict, device: str) -> Callable[[], float]:
    import torch
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM

    from tulu_jax.models import to_hf_dict

    torch.manual_seed(0)
    model = LlamaForCausalLM(HFLlamaConfig(**to_hf_dict(config))).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    ids = torch.tensor(batch["input_ids"], dtype=torch.long, device=device)

    def run_one() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return float(loss.detach())

    return run_one


def jax_generator(config: LlamaConfig, prompt_ids: np.ndarray, new_tokens: int) -> Callable[[], float]:
    params = init_params(config, jax.random.PRNGKey(1))
    mask = np.ones_like(prompt_ids)
    calls = iter(range(1 << 30))

    def run_one() -> float:
        out = generate(params, config, prompt_ids, mask, jax.random.PRNGKey(next(calls)),
                       sampling=SamplingConfig(temperature=1.0), max_new_tokens=new_tokens)
        return float(np.asarray(out.lengths).sum())

    return run_one


def torch_generator(config: LlamaConfig, prompt_ids: np.ndarray, new_tokens: int, device: str) -> Callable[[], float]:
    import torch
    from transformers import LlamaConfig as HFLlamaConfig
    from transformers import LlamaForCausalLM

    from tulu_jax.models import to_hf_dict

    model = LlamaForCausalLM(HFLlamaConfig(**to_hf_dict(config))).to(device=device, dtype=torch.bfloat16).eval()
    ids = torch.tensor(prompt_ids, dtype=torch.long, device=device)

    def run_one() -> float:
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens, eos_token_id=None,
                                 pad_token_id=0, use_cache=True)
        return float(out.shape[0] * (out.shape[1] - ids.shape[1]))

    return run_one


def alternate(contestants: dict[str, Callable[[], float]], warmup: int, reps: int) -> dict[str, dict]:
    """Median seconds per call of each contestant, calls alternating; warm-up calls timed apart."""
    times: dict[str, list[float]] = {name: [] for name in contestants}
    first: dict[str, float] = {}
    for rep in range(warmup + reps):
        for name, run_one in contestants.items():
            start = time.perf_counter()
            run_one()
            elapsed = time.perf_counter() - start
            if rep == 0:
                first[name] = elapsed
            if rep >= warmup:
                times[name].append(elapsed)
    return {name: {"first_call_s": round(first[name], 3), "median_s": round(statistics.median(seconds), 4)}
            for name, seconds in times.items()}


def run(size: str = "auto", reps: int = 5, warmup: int = 2) -> dict:
    platform = jax.devices()[0].platform
    if size == "auto":
        size = "tiny" if platform == "cpu" else "1b"
    base, batch, length, gen_batch, prompt_length, new_tokens = SIZES[size]
    config = base.replace(param_dtype="float32", compute_dtype="bfloat16")
    rng = np.random.default_rng(0)
    ids = rng.integers(2, config.vocab_size, (batch, length)).astype(np.int32)
    sft_batch = {"input_ids": ids, "labels": ids.copy(), "segment_ids": np.ones_like(ids),
                 "positions": np.broadcast_to(np.arange(length, dtype=np.int32), ids.shape).copy()}
    prompt_ids = rng.integers(2, config.vocab_size, (gen_batch, prompt_length)).astype(np.int32)
    device = torch_device(platform)

    sft = {"tulu_jax": jax_sft_stepper(config, sft_batch)}
    gen_config = config.replace(param_dtype="bfloat16")
    generation = {"tulu_jax": jax_generator(gen_config, prompt_ids, new_tokens)}
    if device is not None:
        sft["transformers"] = torch_sft_stepper(config, sft_batch, device)
        generation["transformers"] = torch_generator(gen_config, prompt_ids, new_tokens, device)
    sft_times = alternate(sft, warmup=warmup, reps=reps)
    generation_times = alternate(generation, warmup=1, reps=max(1, reps // 2))

    flops = flops_per_step(config, batch, length)
    peak = measured_matmul_flops(jnp.bfloat16, 512 if platform == "cpu" else 8192)
    result = {
        "device": f"{jax.devices()[0].device_kind} ({platform})", "size": size,
        "attention": attention_implementation(config),
        "torch_device": device or "none (torch cannot reach this device here)",
        "sft": {"batch": batch, "length": length, "flops_per_step": flops, "measured_bf16_matmul_flops": peak},
        "generation": {"batch": gen_batch, "prompt_length": prompt_length, "new_tokens": new_tokens},
    }
    for name, timing in sft_times.items():
        seconds = timing["median_s"]
        result["sft"][name] = {**timing, "tokens_per_second": round(batch * length / seconds, 1),
                               "mfu_vs_measured_matmul": round(flops / seconds / peak, 3)}
    for name, timing in generation_times.items():
        rate = gen_batch * new_tokens / timing["median_s"]
        result["generation"][name] = {**timing, "new_tokens_per_second": round(rate, 1)}
    for section in ("sft", "generation"):
        if "transformers" in result[section]:
            result[section]["speedup"] = round(result[section]["transformers"]["median_s"]
                                               / result[section]["tulu_jax"]["median_s"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("auto", "tiny", "1b"), default="auto")
    parser.add_argument("--reps", type=int, default=5, help="timed SFT steps per side (generation: half)")
    args = parser.parse_args()
    print(json.dumps(run(args.size, args.reps), indent=2))


if __name__ == "__main__":
    main()
