"""Direct NumPy (float64) renderings of the formulas in ../shared/RECIPE.md sections 4-7, written loop by loop.

They share no code with tulu_jax.objectives; the tests compare the two.
"""

import numpy as np


def log_sigmoid(x):
    x = np.asarray(x, dtype=np.float64)
    return -np.logaddexp(0.0, -x)


def log_softmax(logits, temperature=1.0):
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    shifted = scaled - scaled.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def next_token_targets(labels, segment_ids):
    batch, length = labels.shape
    targets = np.zeros((batch, length), np.int64)
    mask = np.zeros((batch, length), np.float64)
    for b in range(batch):
        for t in range(length - 1):
            if labels[b, t + 1] == -100:
                continue
            if segment_ids[b, t] == 0 or segment_ids[b, t] != segment_ids[b, t + 1]:
                continue
            targets[b, t] = labels[b, t + 1]
            mask[b, t] = 1.0
    return targets, mask


def preference_loss(pc, pr, rc, rr, lc, lr, loss_type, beta, eps=0.0, gamma_beta_ratio=0.3):
    """Per-pair losses (RECIPE.md section 5), returned as an array; the batch loss is their mean."""
    pc, pr, rc, rr, lc, lr = (np.asarray(a, np.float64) for a in (pc, pr, rc, rr, lc, lr))
    losses = []
    for i in range(len(pc)):
        if loss_type == "dpo_norm":
            z = (pc[i] - rc[i]) / lc[i] - (pr[i] - rr[i]) / lr[i]
        elif loss_type == "simpo":
            z = pc[i] / lc[i] - pr[i] / lr[i] - gamma_beta_ratio
        else:
            z = (pc[i] - rc[i]) - (pr[i] - rr[i])
        sigmoid_loss = -(1 - eps) * log_sigmoid(beta * z) - eps * log_sigmoid(-beta * z)
        if loss_type == "ipo":
            losses.append((z - 1 / (2 * beta)) ** 2)
        elif loss_type == "wpo":
            weight = min(np.exp(pc[i] / lc[i] + pr[i] / lr[i]), 1.0)
            losses.append(weight * sigmoid_loss)
        else:
            losses.append(sigmoid_loss)
    return np.array(losses)


def kl(logp_policy, logp_reference, kind):
    delta = np.asarray(logp_policy, np.float64) - np.asarray(logp_reference, np.float64)
    return {"k1": delta, "k2": 0.5 * delta**2, "k3": np.exp(-delta) - 1 + delta}[kind]


def per_token_rewards(kl_values, scores, mask, beta):
    rewards = np.zeros(mask.shape)
    for b in range(mask.shape[0]):
        valid = np.nonzero(mask[b])[0]
        for t in valid:
            rewards[b, t] = -beta * kl_values[b, t]
        if len(valid):
            rewards[b, valid[-1]] += scores[b]
    return rewards


def gae(rewards, values, mask, gamma, lam):
    """GAE over each row's valid (contiguous) response tokens; V after the last valid token is 0."""
    advantages = np.zeros(mask.shape)
    for b in range(mask.shape[0]):
        valid = [t for t in range(mask.shape[1]) if mask[b, t]]
        following_advantage, following_value = 0.0, 0.0
        for t in reversed(valid):
            delta = rewards[b, t] + gamma * following_value - values[b, t]
            advantages[b, t] = delta + gamma * lam * following_advantage
            following_advantage, following_value = advantages[b, t], values[b, t]
    returns = (advantages + values) * (mask != 0)
    return advantages, returns


def whiten(values, mask):
    chosen = np.asarray(values, np.float64)[mask != 0]
    mean = chosen.mean()
    variance = chosen.var(ddof=1)  # Bessel-corrected, as the PPO reference's masked_var
    return np.where(mask != 0, (values - mean) / np.sqrt(variance + 1e-8), 0.0)


def masked_mean(values, mask):
    return np.asarray(values, np.float64)[mask != 0].mean()


def clipped_policy_term(new, old, advantages, clip_eps):
    ratio = np.exp(np.asarray(new, np.float64) - old)
    return np.maximum(-advantages * ratio, -advantages * np.clip(ratio, 1 - clip_eps, 1 + clip_eps))


def rloo_advantages(scores, group_size):
    """RLOO: ``r_i − mean_{j≠i} r_j`` over the other samples of the same prompt (consecutive groups)."""
    scores = np.asarray(scores, np.float64)
    advantages = np.zeros_like(scores)
    for start in range(0, len(scores), group_size):
        group = scores[start : start + group_size]
        for i in range(group_size):
            others = [group[j] for j in range(group_size) if j != i]
            advantages[start + i] = group[i] - sum(others) / len(others)
    return advantages


def token_sum_loss(per_token, mask):
    """Dr. GRPO's aggregation: the sum of the valid tokens' losses over (responses × max response length)."""
    total = 0.0
    for row in range(per_token.shape[0]):
        for t in range(per_token.shape[1]):
            if mask[row, t]:
                total += per_token[row, t]
    return total / (per_token.shape[0] * per_token.shape[1])


def off_policy_weights(old, sampler, mask, kind, cap):
    """Per-token weights of the policy term (0 off the response), token by token: tis min(ratio, cap); icepop
    the ratio inside [1/cap, cap] else 0; sequence_mask 1 on responses whose exp(mean log ratio) is inside."""
    old, sampler, mask = (np.asarray(a, np.float64) for a in (old, sampler, mask))
    batch, length = old.shape
    weights = np.zeros((batch, length))
    for b in range(batch):
        tokens = [t for t in range(length) if mask[b, t] != 0]
        geometric = np.exp(np.mean([old[b, t] - sampler[b, t] for t in tokens])) if tokens else 1.0
        for t in tokens:
            ratio = np.exp(old[b, t] - sampler[b, t])
            if kind == "tis":
                weights[b, t] = min(ratio, cap)
            elif kind == "icepop":
                weights[b, t] = ratio if 1.0 / cap <= ratio <= cap else 0.0
            elif kind == "sequence_mask":
                weights[b, t] = 1.0 if 1.0 / cap <= geometric <= cap else 0.0
            else:
                raise ValueError(kind)
    return weights
