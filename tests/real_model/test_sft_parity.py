"""SFT on the real SmolLM2-135M-Instruct (``sum`` loss, its own template, GSM8K train): per-step loss equal to a
plain PyTorch/transformers loop with the same rows, order, AdamW, schedule and clipping."""

import numpy as np
import pytest

from tests.real_model.jax_steps import run_steps
from tests.real_model.sft_rows import sft_batches
from tests.real_model.torch_reference import sft_sum_loss_steps, with_trainable_pad_row
from tulu_jax.stages.sft import BATCH_KEYS, SFTLossConfig, global_token_count, make_sft_loss

PEAK_LR, WARMUP, MAX_GRAD_NORM = 1e-4, 1, 1.0
RELATIVE_TOLERANCE = 1e-4


def compare_sft(smollm2_dir, smollm2_tokenizer, smollm2_ours, steps: int, rows: int, length: int):
    import torch
    import transformers

    config, params = smollm2_ours
    batches = sft_batches(smollm2_tokenizer, smollm2_dir, steps, rows, length)
    loss_fn = make_sft_loss(config, SFTLossConfig(reduction="sum", logits_chunk_size=length))
    ours = run_steps(config, params, loss_fn, batches, BATCH_KEYS, peak_lr=PEAK_LR, warmup=WARMUP,
                     max_grad_norm=MAX_GRAD_NORM, context_fn=global_token_count)
    torch.manual_seed(0)
    model = with_trainable_pad_row(transformers.LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32))
    theirs = sft_sum_loss_steps(model, batches, PEAK_LR, WARMUP, MAX_GRAD_NORM)
    our_loss = np.array([step["loss"] for step in ours])
    their_loss = np.array([step["loss"] for step in theirs])
    relative = np.abs(our_loss - their_loss) / np.abs(their_loss)
    print(f"\nSFT {steps} steps x {rows} rows x {length}: summed loss {their_loss[0]:.2f} -> {their_loss[-1]:.2f}, "
          f"per-token {their_loss[0] / theirs[0]['trained_tokens']:.4f} -> "
          f"{their_loss[-1] / theirs[-1]['trained_tokens']:.4f}; max relative difference {relative.max():.2e}")
    assert [step["trained_tokens"] for step in ours] == [step["trained_tokens"] for step in theirs]
    np.testing.assert_allclose(our_loss, their_loss, rtol=RELATIVE_TOLERANCE)
    np.testing.assert_allclose([s["grad_norm"] for s in ours], [s["grad_norm"] for s in theirs], rtol=1e-3)


def test_sft_sum_loss_steps_equal_a_pytorch_loop(smollm2_shallow_dir, smollm2_tokenizer, smollm2_shallow_ours):
    # 4 steps: the warmup step has learning rate 0, so the last two losses show two AdamW updates. Rows of 128
    # (the shorter GSM8K conversations, in file order) on the model's first 4 layers (conftest) keep it cheap on
    # 2 CPU cores; the slow variant runs all 30 layers on rows of 192.
    compare_sft(smollm2_shallow_dir, smollm2_tokenizer, smollm2_shallow_ours, steps=4, rows=2, length=128)


@pytest.mark.slow
def test_sft_sum_loss_20_steps_equal_a_pytorch_loop(smollm2_dir, smollm2_tokenizer, smollm2_ours):
    compare_sft(smollm2_dir, smollm2_tokenizer, smollm2_ours, steps=20, rows=2, length=192)
