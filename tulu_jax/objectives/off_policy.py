"""Off-policy corrections: per-token weights for the policy-gradient term when the tokens were drawn by a
sampler whose policy differs from the learner's (a stale weight version in asynchronous RL, or bf16 /
kernel differences in a synchronous one).

Each takes the learner's recomputed old log-probs ``old_logprobs`` (π_learner_old), the sampler's
``sampler_logprobs`` (π_sampler) and the response mask, all ``[batch, response_length]``, and returns
``(weights, metrics)``: weights are computed from stored log-probs only, so they carry no gradient (they
are also wrapped in ``stop_gradient``), and are 0 outside the response. The policy loss multiplies its
clipped policy term by them (not the KL penalty to the reference), as open-instruct and verl do.

- :func:`truncated_importance_weights`: token-level truncated importance sampling,
  ``w = min(π_learner_old / π_sampler, cap)``.
- :func:`icepop_weights`: the ratio where it lies in ``[1/cap, cap]``, 0 elsewhere (IcePop's token-level
  mask: tokens the two policies disagree on too much give no gradient at all).
- :func:`sequence_mask_weights`: 1 on every token of a response whose geometric-mean ratio
  ``exp(mean log(π_learner_old / π_sampler))`` lies in ``[1/cap, cap]``, 0 on all of a response outside it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tulu_jax.objectives.masked import masked_mean


def log_ratio(old_logprobs, sampler_logprobs, response_mask) -> jnp.ndarray:
    """``log π_learner_old − log π_sampler`` per token, 0 outside the response (so padding never overflows)."""
    valid = jnp.asarray(response_mask) != 0
    delta = jnp.asarray(old_logprobs, jnp.float32) - jnp.asarray(sampler_logprobs, jnp.float32)
    return jnp.where(valid, delta, 0.0)


def _finish(weights, ratio, kept_as_ratio, response_mask) -> tuple[jnp.ndarray, dict]:
    valid = jnp.asarray(response_mask) != 0
    weights = jax.lax.stop_gradient(jnp.where(valid, weights, 0.0))
    metrics = {
        "off_policy_ratio": masked_mean(ratio, response_mask),
        "off_policy_weight": masked_mean(weights, response_mask),
        # tokens whose weight is not their plain importance ratio (truncated or masked)
        "off_policy_clip_fraction": masked_mean((~kept_as_ratio).astype(jnp.float32), response_mask),
    }
    return weights, jax.tree.map(jax.lax.stop_gradient, metrics)


def truncated_importance_weights(old_logprobs, sampler_logprobs, response_mask, cap: float):
    """Token-level TIS: ``min(exp(old − sampler), cap)`` on response tokens."""
    ratio = jnp.exp(log_ratio(old_logprobs, sampler_logprobs, response_mask))
    return _finish(jnp.minimum(ratio, cap), ratio, ratio <= cap, response_mask)


def icepop_weights(old_logprobs, sampler_logprobs, response_mask, cap: float):
    """IcePop, token level: the ratio where ``1/cap <= ratio <= cap``, else 0."""
    ratio = jnp.exp(log_ratio(old_logprobs, sampler_logprobs, response_mask))
    inside = (ratio >= 1.0 / cap) & (ratio <= cap)
    return _finish(jnp.where(inside, ratio, 0.0), ratio, inside, response_mask)


def sequence_mask_weights(old_logprobs, sampler_logprobs, response_mask, cap: float):
    """Sequence level: 1 on a response whose geometric-mean ratio is in ``[1/cap, cap]``, else 0 on all of it."""
    delta = log_ratio(old_logprobs, sampler_logprobs, response_mask)
    mean_log_ratio = masked_mean(delta, response_mask, axis=1)  # [batch]
    inside = jnp.abs(mean_log_ratio) <= jnp.log(cap)
    inside_tokens = jnp.broadcast_to(inside[:, None], delta.shape)
    return _finish(inside_tokens.astype(jnp.float32), jnp.exp(delta), inside_tokens, response_mask)
