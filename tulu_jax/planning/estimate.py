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


__all__ = ["matmul_params", "training_flops"]
