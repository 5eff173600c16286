"""Choosing the next token from logits: greedy, temperature, top-k, top-p, and its log-probability.

The log-probability returned with each token is taken under the temperature-scaled distribution
``log_softmax(logits / temperature)`` over the whole vocabulary (top-k/top-p only restrict which tokens
may be drawn). That is the quantity the RLVR policy loss recomputes from the trained model, so the
behaviour log-probs of a rollout and the learner's log-probs agree when the weights agree. Greedy
decoding reports ``log_softmax(logits)`` (temperature 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import jax
import jax.numpy as jnp

from tulu_jax.errors import ConfigError


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn; temperature 0 means greedy. Hashable: it is a static argument of the jitted loop."""

    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k restriction
    top_p: float = 1.0  # 1.0: no nucleus restriction

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ConfigError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def scaled_logprobs(logits: jnp.ndarray, sampling: SamplingConfig) -> jnp.ndarray:
    """``log_softmax(logits / temperature)`` in float32 (temperature 1 when greedy)."""
    temperature = 1.0 if sampling.greedy else sampling.temperature
    return jax.nn.log_softmax(logits.astype(jnp.float32) / temperature, axis=-1)


def restricted_logprobs(logprobs: jnp.ndarray, top_k: int, top_p: float) -> tuple[jnp.ndarray, Optional[jnp.ndarray]]:
    """The candidates allowed by top-k then top-p, sorted by probability.

    Returns ``(candidate_logprobs [..., n], candidate_ids [..., n])`` with disallowed candidates at -inf;
    ``candidate_ids`` is None when no restriction applies (then the candidates are the whole vocabulary).
    """
    vocab = logprobs.shape[-1]
    if top_k == 0 and top_p >= 1.0:
        return logprobs, None
    keep = min(top_k, vocab) if top_k else vocab
    # lax.top_k with k = vocab is a full descending sort; with a small k it is much cheaper.
    candidates, candidate_ids = jax.lax.top_k(logprobs, keep)
    if top_p < 1.0:
        # Renormalise within the top-k before the nucleus cut, as top-k is applied first.
        probs = jax.nn.softmax(candidates, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        # The most likely token is always kept, so an empty nucleus cannot happen.
        candidates = jnp.where(mass_before < top_p, candidates, -jnp.inf)
    return candidates, candidate_ids


def choose_tokens(logits: jnp.ndarray, sampling: SamplingConfig, key: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
    """One token per row of ``logits [batch, vocab]`` and its log-prob under the temperature-scaled softmax."""
    logprobs = scaled_logprobs(logits, sampling)  # [batch, vocab]
    if sampling.greedy:
        tokens = jnp.argmax(logprobs, axis=-1).astype(jnp.int32)
    else:
        candidates, candidate_ids = restricted_logprobs(logprobs, sampling.top_k, sampling.top_p)
        picked = jax.random.categorical(key, candidates, axis=-1)
        if candidate_ids is None:
            tokens = picked.astype(jnp.int32)
        else:
            tokens = jnp.take_along_axis(candidate_ids, picked[:, None], axis=-1)[:, 0].astype(jnp.int32)
    token_logprobs = jnp.take_along_axis(logprobs, tokens[:, None], axis=-1)[:, 0]
    return tokens, token_logprobs


def token_keys(key: jax.Array, rows: jnp.ndarray, token_index: jnp.ndarray) -> jax.Array:
    """The key of token ``token_index`` of each row in ``rows [batch]`` (the row's index in its rollout batch:
    prompt × samples_per_prompt + sample). A row draws the same tokens whichever slot or batch runs it."""
    token_index = jnp.broadcast_to(token_index, rows.shape)
    return jax.vmap(lambda row, index: jax.random.fold_in(jax.random.fold_in(key, row), index))(rows, token_index)


def choose_row_tokens(logits: jnp.ndarray, sampling: SamplingConfig, keys: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
    """:func:`choose_tokens` with one key per row (``token_keys``): ``logits [batch, vocab]``, ``keys [batch]``."""
    if sampling.greedy:
        return choose_tokens(logits, sampling, keys[0])
    tokens, logprobs = jax.vmap(lambda row_logits, key: choose_tokens(row_logits[None], sampling, key))(logits, keys)
    return tokens[:, 0], logprobs[:, 0]
