"""Reward-model objective: Bradley–Terry on the score at each sequence's last real token (RECIPE.md section 6)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def last_token_index(mask_or_segment_ids) -> jnp.ndarray:
    """Index of the last non-zero entry of each row of a ``[batch, length]`` mask or segment-id array.

    Works for right- and left-padded rows. A row with no real token gets index 0.
    """
    real = jnp.asarray(mask_or_segment_ids) != 0
    length = real.shape[-1]
    from_the_end = jnp.argmax(real[..., ::-1], axis=-1)  # first real token counted from the right
    return jnp.where(jnp.any(real, axis=-1), length - 1 - from_the_end, 0).astype(jnp.int32)


def scores_at_last_token(per_token_scores, mask_or_segment_ids) -> jnp.ndarray:
    """Pick each row's score at its last real token: ``[batch, length] -> [batch]``."""
    index = last_token_index(mask_or_segment_ids)
    return jnp.take_along_axis(jnp.asarray(per_token_scores), index[:, None], axis=-1)[:, 0]


def bradley_terry_loss(chosen_rewards, rejected_rewards):
    """Return ``(loss, metrics)``: the mean over pairs of ``−logσ(r(chosen) − r(rejected))``."""
    chosen = jnp.asarray(chosen_rewards, dtype=jnp.float32)
    rejected = jnp.asarray(rejected_rewards, dtype=jnp.float32)
    margin = chosen - rejected
    loss = -jnp.mean(jax.nn.log_sigmoid(margin))
    metrics = {
        "accuracy": jnp.mean((margin > 0).astype(jnp.float32)),
        "margin": jnp.mean(margin),
        "rewards/chosen": jnp.mean(chosen),
        "rewards/rejected": jnp.mean(rejected),
    }
    return loss, metrics
