"""XLA options for the generation programs (the static and the continuous-batching sampler)."""

from __future__ import annotations

from typing import Optional

import jax


def decode_compiler_options() -> Optional[dict]:
    """On CPU, decoding multiplies a few rows by each weight matrix; XLA's own dot emitter runs those skinny
    matmuls faster than the library fusion it picks for training (measured: 220 vs 175 new tokens/s on the
    benchmark config), so that fusion is turned off here only. With it off, a large dot inside the decode
    loop (a prefill's [128, 576] x [576, 49152] logits, SmolLM2) once came out wrong in its first 336 columns
    on 8 concurrent CPU devices; the sampler no longer builds that dot (a prefill projects one token a row)."""
    if jax.default_backend() != "cpu":
        return None
    return {"xla_cpu_experimental_ynn_fusion_type": ""}
