"""Mean, variance and whitening over the valid entries of a mask (prompt and padding tokens excluded)."""

from __future__ import annotations

import jax.numpy as jnp

WHITEN_EPS = 1e-8


def masked_sum(values, mask, axis=None) -> jnp.ndarray:
    """Sum of ``values`` where ``mask`` is non-zero."""
    return jnp.sum(jnp.where(jnp.asarray(mask) != 0, values, 0.0), axis=axis)


def masked_mean(values, mask, axis=None) -> jnp.ndarray:
    """Mean of ``values`` over entries where ``mask`` is non-zero; 0 when there are none."""
    count = jnp.sum(jnp.asarray(mask) != 0, axis=axis).astype(jnp.float32)
    return masked_sum(values, mask, axis) / jnp.maximum(count, 1.0)


def masked_var(values, mask, unbiased: bool = True) -> jnp.ndarray:
    """Variance over the valid entries; ``unbiased`` applies Bessel's ``n / (n − 1)`` as the PPO reference does."""
    mean = masked_mean(values, mask)
    variance = masked_mean((jnp.asarray(values) - mean) ** 2, mask)
    if unbiased:
        count = jnp.sum(jnp.asarray(mask) != 0).astype(jnp.float32)
        # One valid entry has no spread to correct; keep the biased value (0) instead of dividing by zero.
        variance = variance * jnp.where(count > 1, count / jnp.maximum(count - 1.0, 1.0), 1.0)
    return variance


def masked_whiten(values, mask, shift_mean: bool = True, unbiased: bool = True) -> jnp.ndarray:
    """``(x − mean) / sqrt(var + 1e-8)`` with mean and variance over valid entries; invalid entries become 0.

    ``shift_mean=False`` rescales but adds the mean back (as for rewards that must keep their sign).
    """
    values = jnp.asarray(values, dtype=jnp.float32)
    mean = masked_mean(values, mask)
    whitened = (values - mean) / jnp.sqrt(masked_var(values, mask, unbiased) + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return jnp.where(jnp.asarray(mask) != 0, whitened, 0.0)
