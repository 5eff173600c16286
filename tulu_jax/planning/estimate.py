"""Analytic training FLOPs of a step, split into the weight matmuls (6·N·T) and attention.

The formula itself lives in ``tulu_jax.training.flops`` (the loop's MFU uses it too); this only splits it.
"""

from __future__ import annotations

from tulu_jax.models.config import LlamaConfig
from tulu_jax.training.flops import flops_per_step, matmul_params


def training_flops(config: LlamaConfig, batch_size: int, length: int) -> dict[str, float]:
    """``{"dense": 6·N·T, "attention": ..., "total": ...}`` for one optimizer step of ``batch_size × length`` tokens."""
    total = flops_per_step(config, batch_size, length)
    dense = 6.0 * matmul_params(config) * batch_size * length
    return {"dense": dense, "attention": total - dense, "total": total}


__all__ = ["decode_flops", "executed_training_flops", "forward_flops", "matmul_params", "training_flops"]


def executed_training_flops(config: LlamaConfig, batch_size: int, length: int) -> float:
    """What the chips run for one training pass with the model's remat policy: the model FLOPs, plus
    - ``full``: the whole forward again in the backward pass (8·N·T instead of 6·N·T, attention likewise);
    - ``dots``: the attention's score and value matmuls again (they have batch dims, which the policy does not
      save; the weight matmuls are saved);
    - ``none``: nothing."""
    split = training_flops(config, batch_size, length)
    if config.remat == "full":
        return split["total"] * 4.0 / 3.0
    if config.remat == "dots":
        return split["total"] + split["attention"] / 3.0
    return split["total"]


def forward_flops(config: LlamaConfig, rows: int, length: int) -> float:
    """One forward pass over ``rows × length`` positions: a third of the training count (2·N·T + attention)."""
    return flops_per_step(config, rows, length) / 3.0


def decode_flops(config: LlamaConfig, rows: int, prompt_length: int, new_tokens: int) -> float:
    """Prefill of the prompts plus one-token steps that each attend to the filled cache (2·N per token)."""
    attention_width = config.num_heads * config.resolved_head_dim
    prefill = forward_flops(config, rows, prompt_length)
    # Step t multiplies against prompt_length + t cached positions (scores and values: 4 FLOPs per position).
    attended = new_tokens * prompt_length + new_tokens * (new_tokens - 1) / 2
    decode = rows * (2.0 * matmul_params(config) * new_tokens + 4.0 * config.num_layers * attention_width * attended)
    return prefill + decode
