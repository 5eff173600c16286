"""Grow a Llama params pytree's vocabulary: the embedding rows and the untied LM head's columns.

Tülu 3 adds ``<pad>`` to the Llama 3 tokenizer (128,257 tokens) and, like open-instruct, pads the vocabulary
to a multiple of 8 (128,264 rows). New rows are the mean of the existing rows, as ``transformers``'
``resize_token_embeddings`` does (it samples around that mean with covariance 1e-9 × the rows' covariance, so
its rows equal the mean to about 1e-5 of the rows' spread). Growing runs as one jitted program per table whose
output is laid out by the given (or the table's own) sharding: no host and no device gathers the whole table.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

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


def resize_vocab(
    params: Params, vocab_size: int, *, tie_word_embeddings: bool = False, shardings: Optional[Params] = None
) -> Params:
    """``params`` with ``vocab_size`` embedding rows (and LM-head columns when untied); new rows are the mean
    of the old ones. The same size returns ``params`` unchanged; a smaller size is refused.

    ``shardings``: a pytree like the grown params (only ``embed_tokens.embedding`` and ``lm_head.kernel`` are
    read), e.g. the stage's shardings for the grown config. Without it a table keeps its own sharding, with
    any dimension the grown size no longer divides replicated (as ``tulu_jax.sharding`` lays out such dims).
    """
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
    embedding_sharding = _target(shardings, "embed_tokens", "embedding")
    resized["embed_tokens"] = {**params["embed_tokens"], "embedding": _grow(
        params["embed_tokens"]["embedding"], vocab_size, axis=0, sharding=embedding_sharding)}
    if not tie_word_embeddings and "lm_head" in params:
        kernel = params["lm_head"]["kernel"]  # [embed, vocab]
        if kernel.shape[1] != current:
            raise CheckpointError(
                f"the LM head has {kernel.shape[1]} vocabulary columns but the embedding has {current} rows; "
                "the checkpoint is inconsistent"
            )
        resized["lm_head"] = {**params["lm_head"], "kernel": _grow(
            kernel, vocab_size, axis=1, sharding=_target(shardings, "lm_head", "kernel"))}
    return resized


def _target(shardings: Optional[Params], module: str, name: str) -> Any:
    return None if shardings is None else shardings[module][name]


def _grow(table: jax.Array, size: int, *, axis: int, sharding: Any = None) -> jax.Array:
    """``table`` extended along ``axis`` to ``size`` with the mean over that axis, laid out by ``sharding``
    (default: the table's own, fitted to the new shape)."""
    shape = tuple(size if dim == axis else extent for dim, extent in enumerate(table.shape))
    if sharding is None:
        sharding = _fitted(getattr(table, "sharding", None), shape)
    grow = jax.jit(functools.partial(_grow_fn, size=size, axis=axis), out_shardings=sharding)
    return grow(table)


def _fitted(sharding: Any, shape: tuple[int, ...]) -> Any:
    """``sharding`` with every dimension that ``shape`` does not divide evenly replicated (jax refuses
    uneven shards: 128,264 rows over a tensor axis of 16, say)."""
    if not isinstance(sharding, NamedSharding):
        return sharding
    spec = list(sharding.spec) + [None] * (len(shape) - len(sharding.spec))
    for dim, entry in enumerate(spec):
        axes = (entry,) if isinstance(entry, str) else (entry or ())
        if shape[dim] % math.prod(sharding.mesh.shape[name] for name in axes):
            spec[dim] = None
    return NamedSharding(sharding.mesh, PartitionSpec(*spec))


def _grow_fn(table: jax.Array, *, size: int, axis: int) -> jax.Array:
    # The mean is accumulated in float32 whatever the parameter dtype (bf16 sums of 128k rows drift).
    mean = jnp.mean(table.astype(jnp.float32), axis=axis, keepdims=True).astype(table.dtype)
    extra_shape = list(table.shape)
    extra_shape[axis] = size - table.shape[axis]
    return jnp.concatenate([table, jnp.broadcast_to(mean, extra_shape)], axis=axis)
