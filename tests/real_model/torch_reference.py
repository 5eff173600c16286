"""Plain PyTorch/transformers training loops on the real model: the reference the parity tests compare with."""

from __future__ import annotations

import numpy as np


def linear_warmup_decay(peak: float, warmup: int, total: int):
    """The learning rate at 0-based step s: 0 → peak over ``warmup`` steps, then linearly to 0 at ``total``."""
    def at(step: int) -> float:
        if step < warmup:
            return peak * step / warmup
        return peak * (1.0 - (step - warmup) / max(total - warmup, 1))
    return at


def token_logprobs(model, input_ids, attention_mask, labels):
    """``(logprobs, mask)`` of each next token, float32 [rows, length - 1]; mask is False where labels are -100."""
    import torch

    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    targets = labels[:, 1:]
    mask = targets != -100
    picked = torch.gather(torch.log_softmax(logits.float(), -1), 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return picked * mask, mask


def sft_sum_loss_steps(model, batches, peak_lr: float, warmup: int, max_grad_norm: float) -> list[dict]:
    """Train ``model`` on ``batches`` with the summed token cross-entropy, AdamW and clipping; per-step metrics."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    schedule = linear_warmup_decay(peak_lr, warmup, len(batches))
    model.train()
    history = []
    for step, batch in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = schedule(step)
        optimizer.zero_grad(set_to_none=True)
        tensors = {key: torch.tensor(np.asarray(value), dtype=torch.long) for key, value in batch.items()}
        logprobs, mask = token_logprobs(model, tensors["input_ids"], tensors["segment_ids"], tensors["labels"])
        loss = -logprobs.sum()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        history.append({"loss": float(loss.detach()), "trained_tokens": int(mask.sum()), "grad_norm": float(grad_norm)})
    return history


def with_trainable_pad_row(model):
    """``model`` with the embedding's ``padding_idx`` cleared, so every row gets its true gradient.

    transformers builds ``nn.Embedding(vocab, hidden, padding_idx=config.pad_token_id)``; SmolLM2's pad token is
    its EOS ``<|im_end|>`` (id 2), so torch would zero the lookup gradient of every real ``<|im_end|>`` too (a
    4.6e-2 relative gradient gap on that one row, measured). The forward pass is unchanged."""
    model.get_input_embeddings().padding_idx = None
    return model
