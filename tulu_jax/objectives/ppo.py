"""PPO's clipped policy loss and clipped value loss (RECIPE.md section 7), as token-masked means."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tulu_jax.objectives.masked import masked_mean


def clipped_policy_term(new_logp, old_logp, advantages, clip_eps: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per token ``max(−A·ratio, −A·clip(ratio, 1−ε, 1+ε))`` with ``ratio = exp(new − old)``.

    Also returns where the clipped branch was the larger one (for the clip-fraction metric).
    """
    new_logp = jnp.asarray(new_logp, dtype=jnp.float32)
    ratio = jnp.exp(new_logp - jnp.asarray(old_logp, dtype=jnp.float32))
    advantages = jnp.asarray(advantages, dtype=jnp.float32)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return jnp.maximum(unclipped, clipped), clipped > unclipped


def policy_metrics(new_logp, old_logp, was_clipped, mask) -> dict:
    """Logging figures shared by PPO and GRPO: clip fraction, ``approx_kl = ½·mean((new − old)²)``, mean ratio."""
    delta = jax.lax.stop_gradient(jnp.asarray(new_logp, jnp.float32) - jnp.asarray(old_logp, jnp.float32))
    return {
        "clip_fraction": masked_mean(was_clipped.astype(jnp.float32), mask),
        "approx_kl": 0.5 * masked_mean(delta**2, mask),
        "ratio": masked_mean(jnp.exp(delta), mask),
    }


def ppo_policy_loss(new_logp, old_logp, advantages, mask, clip_eps: float = 0.2):
    """Return ``(loss, metrics)``: the clipped surrogate, averaged over the tokens where ``mask`` is set."""
    per_token, was_clipped = clipped_policy_term(new_logp, old_logp, advantages, clip_eps)
    loss = masked_mean(per_token, mask)
    metrics = {"policy_loss": loss, **policy_metrics(new_logp, old_logp, was_clipped, mask)}
    return loss, metrics


def ppo_value_loss(values, old_values, returns, mask, clip: float = 0.2):
    """Return ``(loss, metrics)``: ``0.5·masked mean of max((V−R)², (clip(V, V_old ± clip) − R)²)``."""
    values = jnp.asarray(values, dtype=jnp.float32)
    old_values = jnp.asarray(old_values, dtype=jnp.float32)
    returns = jnp.asarray(returns, dtype=jnp.float32)
    clipped_values = jnp.clip(values, old_values - clip, old_values + clip)
    unclipped_error = (values - returns) ** 2
    clipped_error = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(jnp.maximum(unclipped_error, clipped_error), mask)
    metrics = {
        "value_loss": loss,
        "value_clip_fraction": masked_mean((clipped_error > unclipped_error).astype(jnp.float32), mask),
    }
    return loss, metrics
