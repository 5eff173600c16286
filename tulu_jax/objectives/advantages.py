"""Advantage estimators: GAE for PPO with a value model, group normalisation for GRPO (RECIPE.md section 7)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tulu_jax.errors import ConfigError

GROUP_STD_KINDS = ("sample", "population")


def gae(rewards, values, response_mask, gamma: float, lam: float) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Generalised advantage estimation: ``(advantages, returns)``, each ``[batch, length]``.

    ``δ_t = r_t + γ·V_{t+1} − V_t``, ``A_t = δ_t + γλ·A_{t+1}``, ``returns = A + V``. Values past the end
    of the row, and at positions outside ``response_mask``, count as 0, and a masked position ends the
    recursion, so nothing flows across padding. Outputs are 0 outside the mask.
    """
    valid = jnp.asarray(response_mask) != 0
    rewards = jnp.where(valid, jnp.asarray(rewards, dtype=jnp.float32), 0.0)
    values = jnp.where(valid, jnp.asarray(values, dtype=jnp.float32), 0.0)
    next_values = jnp.pad(values[:, 1:], ((0, 0), (0, 1)))
    next_valid = jnp.pad(valid[:, 1:], ((0, 0), (0, 1)), constant_values=False)
    deltas = rewards + gamma * next_values - values

    def backward_step(next_advantage, step_inputs):
        delta, is_valid, following_is_valid = step_inputs
        advantage = delta + gamma * lam * jnp.where(following_is_valid, next_advantage, 0.0)
        advantage = jnp.where(is_valid, advantage, 0.0)
        return advantage, advantage

    # Scan runs over time, so the arrays go in time-major: [length, batch].
    _, advantages = jax.lax.scan(
        backward_step,
        jnp.zeros(rewards.shape[0], jnp.float32),
        (deltas.T, valid.T, next_valid.T),
        reverse=True,
    )
    advantages = advantages.T
    returns = jnp.where(valid, advantages + values, 0.0)
    return advantages, returns


def grpo_advantages(scores, group_size: int, eps: float = 1e-8, std: str = "sample") -> jnp.ndarray:
    """``(v − mean of its group) / (std of its group + eps)`` for ``[num_prompts * group_size]`` scores.

    Groups are consecutive runs of ``group_size`` samples of one prompt. ``std="sample"`` (default) is
    the unbiased n−1 standard deviation, as torch's ``Tensor.std`` in the Tülu 3.1 GRPO code;
    ``"population"`` divides by n (numpy's default, used by later open-instruct versions).
    A group whose samples all scored the same gets advantage 0.
    """
    if std not in GROUP_STD_KINDS:
        raise ConfigError(f"unknown GRPO std {std!r}; allowed: {', '.join(GROUP_STD_KINDS)}")
    scores = jnp.asarray(scores, dtype=jnp.float32)
    if group_size < 1 or scores.shape[0] % group_size:
        raise ConfigError(
            f"GRPO got {scores.shape[0]} scores, not a whole number of groups of {group_size}; "
            "the rollout batch must hold samples_per_prompt samples of each prompt"
        )
    if std == "sample" and group_size < 2:
        raise ConfigError("GRPO with the sample std needs at least 2 samples per prompt; raise samples_per_prompt")
    groups = scores.reshape(-1, group_size)
    mean = jnp.mean(groups, axis=-1, keepdims=True)
    spread = jnp.std(groups, axis=-1, keepdims=True, ddof=1 if std == "sample" else 0)
    return ((groups - mean) / (spread + eps)).reshape(-1)
