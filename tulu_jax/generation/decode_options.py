"""XLA options for the generation programs (the static and the continuous-batching sampler)."""

from __future__ import annotations

from typing import Optional

import jax


def decode_compiler_options() -> Optional[dict]:
    """On CPU, decoding multiplies a few rows by each weight matrix; XLA's own dot emitter runs those skinny
    matmuls faster than the library fusion it picks for training (measured: 220 vs 175 new tokens/s on the
    benchmark config), so that fusion is turned off here only."""
    if jax.default_backend() != "cpu":
        return None
    return {"xla_cpu_experimental_ynn_fusion_type": ""}
