"""Advantage estimators, policy losses and loss aggregations by name, so every RL algorithm runs through
one learner.

An advantage estimator maps a finished rollout to per-token advantages (and value targets when it uses a
value model); its entry declares what it needs (a value model, groups of samples of one prompt). A policy
loss maps current and stored log-probs plus advantages to per-token losses. A loss aggregation says how
a minibatch's per-token losses become one number: their sum over valid tokens divided by its
``normaliser`` of the minibatch's response mask (computed once per minibatch, so micro-batches add up).
An off-policy correction maps the learner's recomputed
old log-probs and the sampler's log-probs to per-token weights of the policy-gradient term (``none``: no
weights, the synchronous recipe as it was). All take an :class:`RLObjectiveConfig` for their hyperparameters; configs name entries by string and are
checked against these tables. A new variant is one decorated function here.

Preference losses (the DPO family) are a table of their own: each entry is the loss function for one
``loss_type`` and declares whether it needs reference log-probs (simpo does not), which decides whether the
DPO stage runs a reference pass at all.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Literal, NamedTuple

import jax.numpy as jnp

from tulu_jax.errors import ConfigError
from tulu_jax.objectives.advantages import gae, grpo_advantages
from tulu_jax.objectives.dpo import LOSS_TYPES as PREFERENCE_LOSS_TYPES
from tulu_jax.objectives.dpo import preference_loss
from tulu_jax.objectives.kl import kl_estimate, per_token_rewards
from tulu_jax.objectives.masked import masked_mean, masked_whiten
from tulu_jax.objectives.off_policy import icepop_weights, sequence_mask_weights, truncated_importance_weights
from tulu_jax.objectives.ppo import clipped_policy_term, policy_metrics


@dataclasses.dataclass(frozen=True)
class RLObjectiveConfig:
    """Hyperparameters of the RL objectives; defaults are Tülu 3 RLVR (PPO) for 8B."""

    advantage_estimator: str = "gae"  # a name in the advantage-estimator registry below
    policy_loss: str = "ppo"  # a name in the policy-loss registry below
    loss_aggregation: str = "token_mean"  # a name in the loss-aggregation registry below
    kl_beta: float = 0.05  # β of the KL penalty (in the reward for PPO, in the loss for GRPO)
    kl_estimator: Literal["k1", "k2", "k3"] = "k1"  # used in PPO's per-token reward; GRPO's loss uses k3
    gamma: float = 1.0
    lam: float = 0.95
    whiten_advantages: bool = True
    clip_eps: float = 0.2
    value_clip: float = 0.2
    group_size: int = 1  # GRPO: samples per prompt, consecutive in the batch
    group_std: Literal["sample", "population"] = "sample"
    # Weights of the policy-gradient term for tokens drawn by a sampler other than the learner's policy: a
    # name in the off-policy-correction registry below; "none" is the synchronous recipe, untouched.
    off_policy_correction: str = "none"
    # c: tis truncates π_learner_old / π_sampler at c; icepop and sequence_mask keep ratios in [1/c, c].
    tis_cap: float = 2.0

    def __post_init__(self) -> None:
        advantage_estimator_entry(self.advantage_estimator, "objective.advantage_estimator")
        get_policy_loss(self.policy_loss, "objective.policy_loss")
        get_loss_aggregation(self.loss_aggregation, "objective.loss_aggregation")
        get_off_policy_correction(self.off_policy_correction, "objective.off_policy_correction")
        if not (math.isfinite(self.tis_cap) and self.tis_cap >= 1.0):
            raise ConfigError(
                f"objective.tis_cap must be finite and >= 1 (the largest importance weight; [1/c, c] must hold 1), "
                f"got {self.tis_cap}"
            )


class Rollout(NamedTuple):
    """What an advantage estimator may read; per-token arrays are ``[batch, response_length]``."""

    sequence_scores: jnp.ndarray  # [batch] verifier reward per response
    response_mask: jnp.ndarray  # 1 on generated tokens (through EOS), 0 on padding
    old_logprobs: jnp.ndarray  # policy log-probs at sampling time
    reference_logprobs: jnp.ndarray | None = None
    values: jnp.ndarray | None = None  # value-model estimates, needed by GAE


class Advantages(NamedTuple):
    advantages: jnp.ndarray  # [batch, response_length], 0 outside the response
    returns: jnp.ndarray | None  # value targets; None when no value model is used
    rewards: jnp.ndarray | None  # per-token rewards, when the estimator forms them


AdvantageEstimator = Callable[[Rollout, RLObjectiveConfig], Advantages]
# (new_logprobs, old_logprobs, reference_logprobs, advantages, response_mask, config)
#   -> (per-token loss [batch, response_length], metrics: token-masked means for logging)
PolicyLoss = Callable[..., tuple]
# (old_logprobs, sampler_logprobs, response_mask, config) -> (per-token weights of the policy term, or None
#   for no correction; metrics)
OffPolicyCorrection = Callable[..., tuple]
# response_mask [batch, response_length] of a whole minibatch -> what its summed token losses are divided by
LossNormaliser = Callable[[jnp.ndarray], jnp.ndarray]



@dataclasses.dataclass(frozen=True)
class AdvantageEstimatorEntry:
    """A registered estimator and what the stage must provide for it."""

    function: AdvantageEstimator
    needs_value_model: bool = False  # the stage trains a value model and passes its values in the rollout
    needs_groups: bool = False  # several samples of each prompt, consecutive rows (group_size >= 2)


_ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimatorEntry] = {}
_POLICY_LOSSES: dict[str, PolicyLoss] = {}
_LOSS_AGGREGATIONS: dict[str, LossNormaliser] = {}
_OFF_POLICY_CORRECTIONS: dict[str, OffPolicyCorrection] = {}


def register_advantage_estimator(name: str, *, needs_value_model: bool = False, needs_groups: bool = False):
    """Decorator: make an estimator selectable as ``advantage_estimator: name``, declaring what it needs."""

    def register(function: AdvantageEstimator) -> AdvantageEstimator:
        _ADVANTAGE_ESTIMATORS[name] = AdvantageEstimatorEntry(function, needs_value_model, needs_groups)
        return function

    return register


def register_policy_loss(name: str):
    """Decorator: make a policy loss selectable as ``policy_loss: name``."""

    def register(function: PolicyLoss) -> PolicyLoss:
        _POLICY_LOSSES[name] = function
        return function

    return register


def register_loss_aggregation(name: str):
    """Decorator: make a normaliser selectable as ``loss_aggregation: name``."""

    def register(function: LossNormaliser) -> LossNormaliser:
        _LOSS_AGGREGATIONS[name] = function
        return function

    return register


def register_off_policy_correction(name: str):
    """Decorator: make a correction selectable as ``off_policy_correction: name``."""

    def register(function: OffPolicyCorrection) -> OffPolicyCorrection:
        _OFF_POLICY_CORRECTIONS[name] = function
        return function

    return register


def _lookup(table: dict, name: str, what: str):
    if name not in table:
        raise ConfigError(f"{what}: unknown name {name!r}; allowed: {', '.join(sorted(table))}")
    return table[name]


def advantage_estimator_entry(name: str, what: str = "advantage estimator") -> AdvantageEstimatorEntry:
    """The registry entry called ``name``; ConfigError listing the known ones otherwise."""
    return _lookup(_ADVANTAGE_ESTIMATORS, name, what)


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    """The registered estimator called ``name``; ConfigError listing the known ones otherwise."""
    return advantage_estimator_entry(name).function


def get_policy_loss(name: str, what: str = "policy loss") -> PolicyLoss:
    """The registered policy loss called ``name``; ConfigError listing the known ones otherwise."""
    return _lookup(_POLICY_LOSSES, name, what)


def get_loss_aggregation(name: str, what: str = "loss aggregation") -> LossNormaliser:
    """The registered aggregation's normaliser called ``name``; ConfigError listing the known ones otherwise."""
    return _lookup(_LOSS_AGGREGATIONS, name, what)


def get_off_policy_correction(name: str, what: str = "off-policy correction") -> OffPolicyCorrection:
    """The registered off-policy correction called ``name``; ConfigError listing the known ones otherwise."""
    return _lookup(_OFF_POLICY_CORRECTIONS, name, what)


def aggregate_policy_loss(per_token_loss, response_mask, normaliser) -> jnp.ndarray:
    """Σ of the per-token losses over valid tokens / ``normaliser`` (the minibatch's, from its aggregation)."""
    valid = jnp.asarray(response_mask) != 0
    return jnp.sum(jnp.where(valid, per_token_loss, 0.0)) / normaliser


def advantage_estimator_names() -> tuple[str, ...]:
    return tuple(sorted(_ADVANTAGE_ESTIMATORS))


def policy_loss_names() -> tuple[str, ...]:
    return tuple(sorted(_POLICY_LOSSES))


def loss_aggregation_names() -> tuple[str, ...]:
    return tuple(sorted(_LOSS_AGGREGATIONS))


def off_policy_correction_names() -> tuple[str, ...]:
    return tuple(sorted(_OFF_POLICY_CORRECTIONS))


@register_advantage_estimator("gae", needs_value_model=True)
def gae_estimator(rollout: Rollout, config: RLObjectiveConfig) -> Advantages:
    """PPO: KL-penalised per-token rewards, GAE against the value model, advantages whitened over valid tokens."""
    if rollout.values is None or rollout.reference_logprobs is None:
        raise ConfigError("advantage_estimator 'gae' needs a value model and reference log-probs in the rollout")
    kl = kl_estimate(rollout.old_logprobs, rollout.reference_logprobs, config.kl_estimator)
    rewards = per_token_rewards(kl, rollout.sequence_scores, rollout.response_mask, config.kl_beta)
    advantages, returns = gae(rewards, rollout.values, rollout.response_mask, config.gamma, config.lam)
    if config.whiten_advantages:
        advantages = masked_whiten(advantages, rollout.response_mask)
    return Advantages(advantages, returns, rewards)


@register_advantage_estimator("grpo", needs_groups=True)
def grpo_estimator(rollout: Rollout, config: RLObjectiveConfig) -> Advantages:
    """GRPO: each response's group-normalised score on every one of its tokens; no value model, no KL reward."""
    per_response = grpo_advantages(rollout.sequence_scores, config.group_size, std=config.group_std)
    valid = jnp.asarray(rollout.response_mask) != 0
    return Advantages(jnp.where(valid, per_response[:, None], 0.0), None, None)


@register_advantage_estimator("rloo", needs_groups=True)
def rloo_estimator(rollout: Rollout, config: RLObjectiveConfig) -> Advantages:
    """RLOO (Ahmadian et al., 2024): each response's score minus the mean score of the other samples of its
    prompt, on every one of its tokens; no value model, no division by a spread."""
    scores = jnp.asarray(rollout.sequence_scores, jnp.float32).reshape(-1, config.group_size)
    leave_one_out = (jnp.sum(scores, axis=1, keepdims=True) - scores) / (config.group_size - 1)
    per_response = (scores - leave_one_out).reshape(-1)
    valid = jnp.asarray(rollout.response_mask) != 0
    return Advantages(jnp.where(valid, per_response[:, None], 0.0), None, None)


@register_policy_loss("ppo")
def ppo_policy_loss_by_config(new_logprobs, old_logprobs, reference_logprobs, advantages, response_mask, config,
                              correction=None):
    """PPO's clipped surrogate per token (times the off-policy ``correction`` weights, when given); the KL to
    the reference already sits in the rewards."""
    del reference_logprobs
    per_token, was_clipped = clipped_policy_term(new_logprobs, old_logprobs, advantages, config.clip_eps)
    if correction is not None:
        per_token = per_token * correction
    metrics = {"policy_loss": masked_mean(per_token, response_mask),
               **policy_metrics(new_logprobs, old_logprobs, was_clipped, response_mask)}
    return per_token, metrics


@register_policy_loss("grpo")
def grpo_loss_by_config(new_logprobs, old_logprobs, reference_logprobs, advantages, response_mask, config,
                        correction=None):
    """GRPO's clipped surrogate (times the off-policy ``correction`` weights, when given) plus β·k3 to the
    reference, per token (k3 of the current policy, so the penalty's gradient flows into it)."""
    policy_term, was_clipped = clipped_policy_term(new_logprobs, old_logprobs, advantages, config.clip_eps)
    if correction is not None:
        policy_term = policy_term * correction
    kl = kl_estimate(new_logprobs, reference_logprobs, "k3")
    metrics = {"policy_loss": masked_mean(policy_term, response_mask), "kl": masked_mean(kl, response_mask),
               **policy_metrics(new_logprobs, old_logprobs, was_clipped, response_mask)}
    return policy_term + config.kl_beta * kl, metrics


@register_off_policy_correction("none")
def no_correction(old_logprobs, sampler_logprobs, response_mask, config):
    """The synchronous recipe: the sampler is taken to be the learner's policy; the loss is not touched."""
    del old_logprobs, sampler_logprobs, response_mask, config
    return None, {}


@register_off_policy_correction("tis")
def truncated_importance_sampling(old_logprobs, sampler_logprobs, response_mask, config):
    """Token-level truncated importance sampling: ``min(π_learner_old / π_sampler, tis_cap)``."""
    return truncated_importance_weights(old_logprobs, sampler_logprobs, response_mask, config.tis_cap)


@register_off_policy_correction("icepop")
def icepop(old_logprobs, sampler_logprobs, response_mask, config):
    """IcePop: the ratio on tokens where it lies in ``[1/tis_cap, tis_cap]``, no gradient from the others."""
    return icepop_weights(old_logprobs, sampler_logprobs, response_mask, config.tis_cap)


@register_off_policy_correction("sequence_mask")
def sequence_mask(old_logprobs, sampler_logprobs, response_mask, config):
    """Whole responses whose geometric-mean ratio leaves ``[1/tis_cap, tis_cap]`` give no gradient."""
    return sequence_mask_weights(old_logprobs, sampler_logprobs, response_mask, config.tis_cap)


@register_loss_aggregation("token_mean")
def token_mean(response_mask) -> jnp.ndarray:
    """Tülu 3 / open-instruct: every valid token of the minibatch weighs the same (Σ loss / token count)."""
    return jnp.maximum(jnp.sum(jnp.asarray(response_mask) != 0).astype(jnp.float32), 1.0)


@register_loss_aggregation("token_sum")
def token_sum(response_mask) -> jnp.ndarray:
    """Dr. GRPO (Liu et al., 2025): Σ loss / (responses × response length), a constant of the batch's shape,
    so the tokens of a long response weigh as much as those of a short one."""
    rows, length = jnp.shape(response_mask)
    return jnp.float32(rows * length)


@dataclasses.dataclass(frozen=True)
class PreferenceLossEntry:
    """A preference loss: ``function(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
    reference_rejected_logps, chosen_lengths, rejected_lengths, *, beta, label_smoothing, gamma_beta_ratio)
    -> (loss, metrics)``, and whether the reference log-probs mean anything to it."""

    function: Callable[..., tuple]
    uses_reference: bool = True


def _preference_loss_of_type(loss_type: str) -> Callable[..., tuple]:
    def loss(*logps_and_lengths, **hyperparameters):
        return preference_loss(*logps_and_lengths, loss_type=loss_type, **hyperparameters)

    return loss


# The formulas live in objectives/dpo.py, one branch per type (RECIPE.md section 5).
_PREFERENCE_LOSSES: dict[str, PreferenceLossEntry] = {
    name: PreferenceLossEntry(_preference_loss_of_type(name), uses_reference=name != "simpo")
    for name in PREFERENCE_LOSS_TYPES
}


def preference_loss_entry(name: str, what: str = "preference loss") -> PreferenceLossEntry:
    """The preference loss called ``name``; ConfigError listing the known ones otherwise."""
    return _lookup(_PREFERENCE_LOSSES, name, what)


def preference_loss_names() -> tuple[str, ...]:
    return tuple(sorted(_PREFERENCE_LOSSES))
