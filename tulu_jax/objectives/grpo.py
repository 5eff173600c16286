"""The GRPO loss: PPO's clipped policy term plus a k3 KL penalty to the reference, per token (RECIPE.md section 7)."""

from __future__ import annotations

import jax.numpy as jnp

from tulu_jax.objectives.kl import kl_estimate
from tulu_jax.objectives.masked import masked_mean
from tulu_jax.objectives.ppo import clipped_policy_term, policy_metrics


def grpo_loss(new_logp, old_logp, ref_logp, advantages_per_token, mask, clip_eps: float = 0.2, beta: float = 0.01):
    """Return ``(loss, metrics)``: masked mean over tokens of ``clipped policy term + β·k3(new, ref)``.

    ``advantages_per_token`` is ``[batch, length]``, or ``[batch]`` (one advantage per response, as
    :func:`grpo_advantages` gives) which is broadcast over the response's tokens.
    """
    new_logp = jnp.asarray(new_logp, dtype=jnp.float32)
    advantages = jnp.asarray(advantages_per_token, dtype=jnp.float32)
    if advantages.ndim == 1:
        advantages = jnp.broadcast_to(advantages[:, None], new_logp.shape)
    policy_term, was_clipped = clipped_policy_term(new_logp, old_logp, advantages, clip_eps)
    # k3 is computed from the current policy so the penalty's gradient flows into it.
    kl = kl_estimate(new_logp, ref_logp, "k3")
    loss = masked_mean(policy_term + beta * kl, mask)
    metrics = {
        "policy_loss": masked_mean(policy_term, mask),
        "kl": masked_mean(kl, mask),
        **policy_metrics(new_logp, old_logp, was_clipped, mask),
    }
    return loss, metrics
