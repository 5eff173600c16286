"""Shared pieces of the training tests: a very small Llama, synthetic packed SFT batches."""

from __future__ import annotations

import numpy as np
import pytest

from tulu_jax.models import LlamaConfig

IGNORE = -100


def micro_config(**changes) -> LlamaConfig:
    """One layer, hidden 32: compiles in seconds, still a full Llama (GQA, rope, RMSNorm)."""
    base = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                       num_kv_heads=1, max_position_embeddings=64, rope_theta=10000.0, rope_scaling=None,
                       bos_token_id=None, eos_token_id=1, pad_token_id=0)
    return base.replace(**changes)


def packed_batch(rows: int, length: int, seed: int, lengths=None) -> dict[str, np.ndarray]:
    """Rows of two packed examples each (a 3-token prompt, then trained tokens), zero padding at the end.

    ``lengths[r]`` gives the two example lengths of row r; by default they vary so rows hold unequal
    numbers of trained tokens.
    """
    rng = np.random.default_rng(seed)
    batch = {key: np.zeros((rows, length), np.int32) for key in ("input_ids", "labels", "segment_ids", "positions")}
    batch["labels"][:] = IGNORE
    for row in range(rows):
        first, second = lengths[row] if lengths is not None else (int(rng.integers(5, length // 2)), int(rng.integers(4, length // 2)))
        start = 0
        for segment, size in enumerate((first, second), start=1):
            tokens = rng.integers(2, 64, size)
            batch["input_ids"][row, start:start + size] = tokens
            batch["segment_ids"][row, start:start + size] = segment
            batch["positions"][row, start:start + size] = np.arange(size)
            batch["labels"][row, start + 3:start + size] = tokens[3:]
            start += size
    return batch


@pytest.fixture(scope="session")
def compilation_cache(tmp_path_factory):
    """A persistent JAX compilation cache for subprocess runs of the CLI (later runs skip compiling)."""
    return tmp_path_factory.mktemp("jax_cache")
