"""Grow a Llama params pytree's vocabulary: the embedding rows and the untied LM head's columns.

Tülu 3 adds ``<pad>`` to the Llama 3 tokenizer (128,257 tokens) and, like open-instruct, pads the vocabulary
to a multiple of 8 (128,264 rows). New rows are the mean of the existing rows, as ``transformers``'
``resize_token_embeddings`` does (it samples around that mean with covariance 1e-9 × the rows' covariance, so
its rows equal the mean to about 1e-5 of the rows' spread). Growing runs as one jitted program per table whose
output keeps the table's sharding: no host and no device ever holds the whole table.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from tulu_jax.errors import CheckpointError, ConfigError

Params = dict[str, Any]

DEFAULT_MULTIPLE = 8  # open-instruct's pad_to_multiple_of


def padded_vocab_size(tokenizer_size: int, multiple: int = DEFAULT_MULTIPLE) -> int:
    """``tokenizer_size`` rounded up to a multiple of ``multiple`` (128,257 → 128,264 for 8)."""
    if multiple < 1:
        raise ConfigError(f"model.resize_vocab_multiple must be a positive integer, got {multiple}")
    return -(-tokenizer_size // multiple) * multiple


def vocab_size_for_tokenizer(tokenizer_size: int, checkpoint_vocab_size: int, multiple: int = DEFAULT_MULTIPLE) -> int:
    """The vocabulary a model needs for a tokenizer: the checkpoint's when every token id has a row, else the
    tokenizer size rounded up to ``multiple``. Never smaller than the checkpoint (unused rows are harmless)."""
    if tokenizer_size <= checkpoint_vocab_size:
        return checkpoint_vocab_size
    return padded_vocab_size(tokenizer_size, multiple)


def vocab_size_of(params: Params) -> int:
    return int(params["embed_tokens"]["embedding"].shape[0])


def resize_vocab(params: Params, vocab_size: int, *, tie_word_embeddings: bool = False) -> Params:
    """``params`` with ``vocab_size`` embedding rows (and LM-head columns when untied); new rows are the mean
    of the old ones. The same size returns ``params`` unchanged; a smaller size is refused."""
    current = vocab_size_of(params)
    if vocab_size < current:
        raise ConfigError(
            f"cannot shrink the vocabulary from {current} to {vocab_size} rows: the checkpoint's token rows "
            "would be lost. Use a tokenizer with at most as many tokens as the checkpoint's vocab_size, or a "
            "vocabulary size at least as large"
        )
    if vocab_size == current:
        return params
    resized = dict(params)
    resized["embed_tokens"] = {**params["embed_tokens"],
                               "embedding": _grow(params["embed_tokens"]["embedding"], vocab_size, axis=0)}
    if not tie_word_embeddings and "lm_head" in params:
        kernel = params["lm_head"]["kernel"]  # [embed, vocab]
        if kernel.shape[1] != current:
            raise CheckpointError(
                f"the LM head has {kernel.shape[1]} vocabulary columns but the embedding has {current} rows; "
                "the checkpoint is inconsistent"
            )
        resized["lm_head"] = {**params["lm_head"], "kernel": _grow(kernel, vocab_size, axis=1)}
    return resized


def _grow(table: jax.Array, size: int, *, axis: int) -> jax.Array:
    """``table`` extended along ``axis`` to ``size`` with the mean over that axis, in the table's sharding."""
    sharding = getattr(table, "sharding", None)
    grow = jax.jit(functools.partial(_grow_fn, size=size, axis=axis), out_shardings=sharding)
    return grow(table)


def _grow_fn(table: jax.Array, *, size: int, axis: int) -> jax.Array:
    # The mean is accumulated in float32 whatever the parameter dtype (bf16 sums of 128k rows drift).
    mean = jnp.mean(table.astype(jnp.float32), axis=axis, keepdims=True).astype(table.dtype)
    extra_shape = list(table.shape)
    extra_shape[axis] = size - table.shape[axis]
    return jnp.concatenate([table, jnp.broadcast_to(mean, extra_shape)], axis=axis)
