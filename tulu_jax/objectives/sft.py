"""The SFT loss: token cross-entropy with the Tülu 3 ``sum`` reduction or a global-batch ``mean``.

Gradient accumulation contract (one optimizer step = one global batch split into micro-batches,
possibly also across data-parallel hosts):

* ``reduction="sum"`` (Tülu 3 default): each call returns the summed cross-entropy of its trained
  tokens. Adding the micro-batch losses (and gradients) gives exactly the global-batch loss (and
  gradient); every trained token weighs the same, wherever it sits. Do not divide by the number of
  micro-batches or tokens.
* ``reduction="mean"``: pass ``num_global_tokens`` = the number of trained tokens in the WHOLE global
  batch (all micro-batches, all hosts). Each call returns its summed cross-entropy divided by that
  count, so the micro-batch losses add up to the exact global per-token mean. Leaving it ``None``
  divides by this call's own token count, which is right only when one call sees the whole batch;
  averaging such per-micro-batch means would weigh tokens of short micro-batches more.

For logging across micro-batches, add ``loss_sum`` and ``trained_tokens`` and divide at the end.
"""

from __future__ import annotations

import jax.numpy as jnp

from tulu_jax.errors import ConfigError

REDUCTIONS = ("sum", "mean")


def sft_loss(token_logprobs, loss_mask, reduction: str = "sum", num_global_tokens=None):
    """Return ``(loss, metrics)`` for ``[batch, length]`` target log-probs and a 0/1 loss mask.

    metrics: ``loss_sum`` (summed cross-entropy), ``trained_tokens``, ``per_token_loss`` (their ratio).
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"unknown SFT loss reduction {reduction!r}; allowed: {', '.join(REDUCTIONS)}")
    mask = jnp.asarray(loss_mask, dtype=jnp.float32)
    cross_entropy = -jnp.asarray(token_logprobs, dtype=jnp.float32) * mask
    loss_sum = jnp.sum(cross_entropy)
    trained_tokens = jnp.sum(mask)
    if reduction == "sum":
        loss = loss_sum
    else:
        denominator = trained_tokens if num_global_tokens is None else jnp.asarray(num_global_tokens, jnp.float32)
        # An empty batch has loss 0 rather than NaN.
        loss = loss_sum / jnp.maximum(denominator, 1.0)
    metrics = {
        "loss_sum": loss_sum,
        "trained_tokens": trained_tokens,
        "per_token_loss": loss_sum / jnp.maximum(trained_tokens, 1.0),
    }
    return loss, metrics
