"""PPO and GRPO written out in PyTorch on transformers' model, for one fixed rollout batch (RECIPE.md section 7):
response log-probs, k1/k3 KL, KL-penalised rewards, GAE with whitening, group-normalised advantages, the
clipped surrogate, and the token-mean loss."""

from __future__ import annotations

import torch


def response_logprobs(model, input_ids, positions, segment_ids, prompt_length: int):
    """Log-probs ``[rows, R]`` of the response tokens (columns ``prompt_length``..) under ``model``."""
    logits = model(input_ids=input_ids, attention_mask=segment_ids, position_ids=positions).logits
    predicting = torch.log_softmax(logits[:, prompt_length - 1 : -1].float(), -1)
    return torch.gather(predicting, 2, input_ids[:, prompt_length:].unsqueeze(-1)).squeeze(-1)


def masked_mean(values, mask):
    return (values * mask).sum() / mask.sum().clamp(min=1)


def whiten(values, mask):
    mean = masked_mean(values, mask)
    count = mask.sum()
    variance = masked_mean((values - mean) ** 2, mask) * count / (count - 1)
    return ((values - mean) / torch.sqrt(variance + 1e-8)) * mask


def ppo_advantages(scores, mask, old_logprobs, reference_logprobs, values, kl_beta, gamma, lam):
    """``(advantages, per-token rewards)``: r_t = −β·k1 plus the score at the last response token; GAE; whitened."""
    kl = old_logprobs - reference_logprobs
    rewards = -kl_beta * kl * mask
    last = mask.sum(1).long() - 1
    rewards[torch.arange(len(scores)), last] += scores
    values = values * mask
    rows, length = mask.shape
    advantages = torch.zeros(rows, length, dtype=torch.float64)
    following = torch.zeros(rows, dtype=torch.float64)
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros(rows, dtype=torch.float64)
        next_valid = mask[:, t + 1] if t + 1 < length else torch.zeros(rows, dtype=torch.float64)
        delta = rewards[:, t] + gamma * next_value * next_valid - values[:, t]
        following = (delta + gamma * lam * following * next_valid) * mask[:, t]
        advantages[:, t] = following
    return whiten(advantages, mask), rewards


def grpo_advantages(scores, group_size: int, mask):
    groups = scores.reshape(-1, group_size)
    normalised = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-8)
    return normalised.reshape(-1, 1) * mask


def clipped_term(new_logprobs, old_logprobs, advantages, clip_eps):
    ratio = torch.exp(new_logprobs - old_logprobs)
    return torch.maximum(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps))


def k3(new_logprobs, reference_logprobs):
    delta = new_logprobs - reference_logprobs
    return torch.exp(-delta) - 1 + delta
