"""The dtype ``convert --from-hf`` writes by default: the checkpoint's own, when it has one we compute in.

A checkpoint that mixes dtypes (a bf16 embedding, the rest f32) or stores float16 has no such dtype:
writing every tensor in one dtype would change some of them without a word, so the user chooses (--dtype).
"""

from __future__ import annotations

from typing import Optional

from tulu_jax.errors import CheckpointError, ConfigError
from tulu_jax.hf.tensor_plan import IGNORED_SUFFIXES
from tulu_jax.hf.safetensors_index import SafetensorsIndex

COMPUTED_DTYPES = ("float32", "bfloat16")


def conversion_dtype(index: SafetensorsIndex, requested: Optional[str], where: str) -> str:
    """``requested`` when given; else the one dtype every model tensor is stored in, if we compute in it."""
    if "model.embed_tokens.weight" not in index:
        raise CheckpointError(f"{where}: no model.embed_tokens.weight in its safetensors; is this a complete Llama "
                              "checkpoint?")
    if requested:
        return requested
    by_dtype: dict[str, list[str]] = {}
    for name, location in sorted(index.tensors.items()):
        if not name.endswith(IGNORED_SUFFIXES):
            by_dtype.setdefault(str(location.dtype), []).append(name)
    if len(by_dtype) > 1:
        shown = "; ".join(f"{dtype}: {names[0]}{f' and {len(names) - 1} more' if len(names) > 1 else ''}"
                          for dtype, names in sorted(by_dtype.items()))
        raise ConfigError(f"{where} stores tensors in several dtypes ({shown}) and a conversion writes one; choose it "
                          "with --dtype float32 (exact for all of them) or --dtype bfloat16")
    (stored,) = by_dtype
    if stored not in COMPUTED_DTYPES:
        raise ConfigError(f"{where} stores {stored} tensors, which are written as float32 or bfloat16; choose with "
                          "--dtype float32 (exact for float16) or --dtype bfloat16")
    return stored
