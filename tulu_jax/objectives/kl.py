"""Per-token KL estimators and the RLVR per-token reward (RECIPE.md section 7)."""

from __future__ import annotations

import jax.numpy as jnp

from tulu_jax.errors import ConfigError
from tulu_jax.objectives.reward_model import last_token_index

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logp_policy, logp_reference, kind: str = "k1") -> jnp.ndarray:
    """Per-token estimate of KL(π‖ρ) from sampled-token log-probs, with ``Δ = logπ − logρ``.

    ``k1 = Δ`` (unbiased, can be negative), ``k2 = ½Δ²``, ``k3 = exp(−Δ) − 1 + Δ`` (unbiased, never negative).
    """
    delta = jnp.asarray(logp_policy, dtype=jnp.float32) - jnp.asarray(logp_reference, dtype=jnp.float32)
    if kind == "k1":
        return delta
    if kind == "k2":
        return 0.5 * delta**2
    if kind == "k3":
        return jnp.exp(-delta) - 1.0 + delta
    raise ConfigError(f"unknown KL estimator {kind!r}; allowed: {', '.join(KL_ESTIMATORS)}")


def per_token_rewards(kl, sequence_scores, response_mask, beta: float) -> jnp.ndarray:
    """Per-token rewards ``[batch, length]``: ``r_t = −β·k_t`` on response tokens, plus each sequence's score
    at its last response token.

    Positions outside ``response_mask`` get 0; a row without response tokens gets no score.
    """
    valid = jnp.asarray(response_mask) != 0
    rewards = jnp.where(valid, -beta * jnp.asarray(kl, dtype=jnp.float32), 0.0)
    last = last_token_index(valid)
    scores = jnp.where(jnp.any(valid, axis=-1), jnp.asarray(sequence_scores, dtype=jnp.float32), 0.0)
    at_last = jnp.arange(rewards.shape[-1])[None, :] == last[:, None]
    return rewards + jnp.where(at_last, scores[:, None], 0.0)
