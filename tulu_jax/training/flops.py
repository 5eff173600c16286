"""Model FLOPs per training step and the peak FLOP/s they are measured against (MFU).

Per trained position: ``6·N`` for the weight matmuls (forward 2·N, backward 4·N; N counts every matrix
the tokens pass through — the embedding lookup is not a matmul, the output projection is) plus
``12·L·H·d_head·S`` for attention scores and weighted values over a row of S positions (forward 4, backward
8). The causal mask is not discounted: the attention computes the full S×S block and masks it.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from tulu_jax.models.config import LlamaConfig

# bfloat16 dense peak per chip, from the vendors' spec sheets.
KNOWN_PEAK_FLOPS = {"TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6 lite": 918e12}


def matmul_params(config: LlamaConfig) -> int:
    """Parameters that multiply activations: everything but the embedding table (unless it is tied)."""
    count = config.num_params()
    if not config.tie_word_embeddings:
        count -= config.vocab_size * config.hidden_size
    return count


def flops_per_step(config: LlamaConfig, batch_size: int, seq_len: int) -> float:
    """Training FLOPs (forward + backward) of one step over ``batch_size`` rows of ``seq_len`` positions."""
    tokens = batch_size * seq_len
    attention_width = config.num_heads * config.resolved_head_dim
    per_token = 6 * matmul_params(config) + 12 * config.num_layers * attention_width * seq_len
    return float(per_token * tokens)


def peak_flops_per_second(configured: float | None = None, dtype=jnp.float32, size: int = 1024) -> tuple[float, str]:
    """Total peak FLOP/s of all local devices and where the number came from.

    Order: the configured value, the spec sheet for known TPUs, else a timed ``size``² matmul per device
    (a practical ceiling rather than a datasheet number, which is what CPU runs have).
    """
    devices = jax.local_devices()
    if configured:
        return float(configured) * len(devices), "configured"
    kind = devices[0].device_kind
    for name, flops in KNOWN_PEAK_FLOPS.items():
        if kind.startswith(name):
            return flops * len(devices), f"spec sheet ({kind})"
    return measured_matmul_flops(dtype, size) * len(devices), f"measured {size}x{size} matmul on {kind}"


def measured_matmul_flops(dtype=jnp.float32, size: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a jitted square matmul on the first device (best of ``repeats``)."""
    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda x, y: x @ y)
    matmul(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best
