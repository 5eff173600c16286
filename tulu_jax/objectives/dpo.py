"""Preference losses of the DPO family (``dpo``, Tülu 3's length-normalised ``dpo_norm``, ``simpo``, ``ipo``, ``wpo``).

Formulas: ../shared/RECIPE.md section 5. Sequence log-probs are sums over response tokens; the batch
loss is the mean over pairs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tulu_jax.errors import ConfigError

LOSS_TYPES = ("dpo", "dpo_norm", "simpo", "ipo", "wpo")


def sequence_logps(token_logprobs, loss_mask) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Per row: the summed log-prob of the trained (response) tokens and their count, ``[batch]`` each."""
    mask = jnp.asarray(loss_mask, dtype=jnp.float32)
    sums = jnp.sum(jnp.asarray(token_logprobs, dtype=jnp.float32) * mask, axis=-1)
    return sums, jnp.sum(mask, axis=-1)


def _sigmoid_loss(z, beta, label_smoothing):
    """``−(1−ε)·logσ(βz) − ε·logσ(−βz)`` per pair."""
    return -(1.0 - label_smoothing) * jax.nn.log_sigmoid(beta * z) - label_smoothing * jax.nn.log_sigmoid(-beta * z)


def preference_loss(
    policy_chosen_logps,
    policy_rejected_logps,
    reference_chosen_logps,
    reference_rejected_logps,
    chosen_lengths,
    rejected_lengths,
    *,
    loss_type: str,
    beta: float,
    label_smoothing: float = 0.0,
    gamma_beta_ratio: float = 0.3,
):
    """Return ``(loss, metrics)``: the mean over pairs of the ``loss_type`` loss; inputs are ``[pairs]``.

    ``simpo`` ignores the reference log-probs (pass anything of the right shape, e.g. zeros).
    Lengths are response-token counts; a zero length is treated as 1 to keep the loss finite.
    Logged rewards are ``β·(logp_π − logp_ρ)``, per token for ``dpo_norm``, and ``β·logp_π/|y|`` for ``simpo``.
    """
    if loss_type not in LOSS_TYPES:
        raise ConfigError(f"unknown preference loss_type {loss_type!r}; allowed: {', '.join(LOSS_TYPES)}")
    as_f32 = lambda x: jnp.asarray(x, dtype=jnp.float32)  # noqa: E731
    policy_chosen, policy_rejected = as_f32(policy_chosen_logps), as_f32(policy_rejected_logps)
    reference_chosen, reference_rejected = as_f32(reference_chosen_logps), as_f32(reference_rejected_logps)
    raw_chosen_lengths, raw_rejected_lengths = as_f32(chosen_lengths), as_f32(rejected_lengths)
    chosen_lengths = jnp.maximum(raw_chosen_lengths, 1.0)
    rejected_lengths = jnp.maximum(raw_rejected_lengths, 1.0)

    chosen_log_ratio = policy_chosen - reference_chosen
    rejected_log_ratio = policy_rejected - reference_rejected
    if loss_type == "dpo_norm":
        chosen_log_ratio = chosen_log_ratio / chosen_lengths
        rejected_log_ratio = rejected_log_ratio / rejected_lengths
    if loss_type == "simpo":
        # No reference: the length-normalised policy log-probs play the part of the log-ratios.
        chosen_log_ratio = policy_chosen / chosen_lengths
        rejected_log_ratio = policy_rejected / rejected_lengths
    z = chosen_log_ratio - rejected_log_ratio

    if loss_type in ("dpo", "dpo_norm"):
        per_pair = _sigmoid_loss(z, beta, label_smoothing)
    elif loss_type == "simpo":
        per_pair = _sigmoid_loss(z - gamma_beta_ratio, beta, label_smoothing)
    elif loss_type == "ipo":
        per_pair = (z - 1.0 / (2.0 * beta)) ** 2
    else:  # wpo: a pair's weight is how likely the policy finds both responses, per token, capped at 1.
        weight = jnp.minimum(jnp.exp(policy_chosen / chosen_lengths + policy_rejected / rejected_lengths), 1.0)
        per_pair = jax.lax.stop_gradient(weight) * _sigmoid_loss(z, beta, label_smoothing)

    chosen_rewards = jax.lax.stop_gradient(beta * chosen_log_ratio)
    rejected_rewards = jax.lax.stop_gradient(beta * rejected_log_ratio)
    metrics = {
        "rewards/chosen": jnp.mean(chosen_rewards),
        "rewards/rejected": jnp.mean(rejected_rewards),
        "rewards/margin": jnp.mean(chosen_rewards - rejected_rewards),
        "rewards/accuracy": jnp.mean((chosen_rewards > rejected_rewards).astype(jnp.float32)),
        "logps/chosen": jnp.mean(policy_chosen),
        "logps/rejected": jnp.mean(policy_rejected),
        "lengths/chosen": jnp.mean(raw_chosen_lengths),
        "lengths/rejected": jnp.mean(raw_rejected_lengths),
    }
    return jnp.mean(per_pair), metrics
