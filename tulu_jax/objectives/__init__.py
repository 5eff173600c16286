"""Training objectives as pure functions of arrays (logits or log-probs, and masks); no model code here."""

from tulu_jax.objectives.advantages import gae, grpo_advantages
from tulu_jax.objectives.dpo import LOSS_TYPES as PREFERENCE_LOSS_TYPES
from tulu_jax.objectives.dpo import preference_loss, sequence_logps
from tulu_jax.objectives.grpo import grpo_loss
from tulu_jax.objectives.kl import kl_estimate, per_token_rewards
from tulu_jax.objectives.logprobs import (
    chunked_token_logprobs,
    token_entropy_from_logits,
    token_logprobs_from_logits,
)
from tulu_jax.objectives.masked import masked_mean, masked_sum, masked_var, masked_whiten
from tulu_jax.objectives.ppo import ppo_policy_loss, ppo_value_loss
from tulu_jax.objectives.registry import (
    Advantages,
    RLObjectiveConfig,
    Rollout,
    get_advantage_estimator,
    get_policy_loss,
    register_advantage_estimator,
    register_policy_loss,
)
from tulu_jax.objectives.reward_model import bradley_terry_loss, last_token_index, scores_at_last_token
from tulu_jax.objectives.sft import sft_loss
from tulu_jax.objectives.targets import IGNORE_INDEX, next_token_targets

__all__ = [
    "IGNORE_INDEX",
    "PREFERENCE_LOSS_TYPES",
    "Advantages",
    "RLObjectiveConfig",
    "Rollout",
    "bradley_terry_loss",
    "chunked_token_logprobs",
    "gae",
    "get_advantage_estimator",
    "get_policy_loss",
    "grpo_advantages",
    "grpo_loss",
    "kl_estimate",
    "last_token_index",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "next_token_targets",
    "per_token_rewards",
    "ppo_policy_loss",
    "ppo_value_loss",
    "preference_loss",
    "register_advantage_estimator",
    "register_policy_loss",
    "scores_at_last_token",
    "sequence_logps",
    "sft_loss",
    "token_entropy_from_logits",
    "token_logprobs_from_logits",
]
