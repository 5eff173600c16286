"""Our Llama's logits on the real SmolLM2-135M-Instruct equal transformers' on real conversations (float32)."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from tests.helpers.real_conversations import gsm8k_rows, multi_turn
from tulu_jax.models import Llama

CONVERSATIONS = 10
PADDED_LENGTH = 704
MAX_ABS_DIFFERENCE = 5e-4  # float32 rounding over 30 layers; see README "A real model"


def conversation_ids(tokenizer, count: int) -> list[list[int]]:
    """GSM8K test questions asked and answered in turn, grown to 200–700 tokens with the model's own template."""
    conversations, rows, start = [], [], 0
    while len(conversations) < count:
        rows.append(gsm8k_rows("test", 1, start)[0])
        start += 1
        ids = tokenizer.apply_chat_template(multi_turn(rows), tokenize=True, return_dict=False)
        if len(ids) >= 200:
            if len(ids) <= 700:
                conversations.append(list(ids))
            rows = []
    return conversations


def test_logits_equal_transformers_on_real_conversations(smollm2_dir, smollm2_ours, smollm2_torch):
    import transformers

    config, params = smollm2_ours
    reference_tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    conversations = conversation_ids(reference_tokenizer, CONVERSATIONS)
    forward = jax.jit(lambda params, ids: Llama(config).apply({"params": params}, ids))
    params = jax.tree.map(jnp.asarray, params)
    worst, positions = 0.0, 0
    for ids in conversations:
        padded = np.zeros((1, PADDED_LENGTH), np.int32)
        padded[0, : len(ids)] = ids  # right padding: causal attention keeps it out of the real positions
        ours = np.asarray(forward(params, padded))[0, : len(ids)]
        with torch.no_grad():
            reference = smollm2_torch(torch.tensor([ids])).logits[0].numpy()
        worst = max(worst, float(np.abs(ours - reference).max()))
        np.testing.assert_array_equal(ours.argmax(-1), reference.argmax(-1))
        positions += len(ids)
    lengths = [len(ids) for ids in conversations]
    print(f"\nlogits on {len(conversations)} conversations of {min(lengths)}-{max(lengths)} tokens "
          f"({positions} positions): max |ours - transformers| = {worst:.2e}")
    assert min(lengths) >= 200 and max(lengths) <= 700
    assert worst <= MAX_ABS_DIFFERENCE
