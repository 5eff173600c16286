"""Our Llama's logits on the real SmolLM2-135M-Instruct equal transformers' on real conversations (float32)."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from tests.helpers.real_conversations import gsm8k_rows, multi_turn
from tulu_jax.models import Llama

CONVERSATIONS = 10
ROW_LENGTH = 768  # conversations packed into rows this long (each <= 700 tokens, so any one fits a row)
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


def packed_rows(conversations: list[list[int]], row_length: int):
    """First-fit packing as training packs: ``(input_ids, positions, segment_ids)`` int32 [rows, row_length]
    (positions restart at 0 and segment ids count up per conversation; 0 on the padding at each row's end)
    and where each conversation lies, ``(row, start)``."""
    rows, places = [], []
    for ids in conversations:
        row = next((r for r, used in enumerate(rows) if used + len(ids) <= row_length), len(rows))
        if row == len(rows):
            rows.append(0)
        places.append((row, rows[row]))
        rows[row] += len(ids)
    input_ids, positions, segment_ids = (np.zeros((len(rows), row_length), np.int32) for _ in range(3))
    for segment, (ids, (row, start)) in enumerate(zip(conversations, places), start=1):
        input_ids[row, start : start + len(ids)] = ids
        positions[row, start : start + len(ids)] = np.arange(len(ids))
        segment_ids[row, start : start + len(ids)] = segment
    return input_ids, positions, segment_ids, places


def test_logits_equal_transformers_on_real_conversations(smollm2_dir, smollm2_ours, smollm2_torch):
    import transformers

    config, params = smollm2_ours
    reference_tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    conversations = conversation_ids(reference_tokenizer, CONVERSATIONS)
    # Packed rather than each padded to 700: the same positions at a third of the compute (2 CPU cores).
    input_ids, positions_, segment_ids, places = packed_rows(conversations, ROW_LENGTH)
    forward = jax.jit(lambda params, ids, pos, seg: Llama(config).apply({"params": params}, ids, pos, seg))
    packed_logits = np.asarray(forward(jax.tree.map(jnp.asarray, params), input_ids, positions_, segment_ids))
    worst, positions = 0.0, 0
    for ids, (row, start) in zip(conversations, places):
        ours = packed_logits[row, start : start + len(ids)]
        with torch.no_grad():
            reference = smollm2_torch(torch.tensor([ids])).logits[0].numpy()
        worst = max(worst, float(np.abs(ours - reference).max()))
        np.testing.assert_array_equal(ours.argmax(-1), reference.argmax(-1))
        positions += len(ids)
    lengths = [len(ids) for ids in conversations]
    print(f"\nlogits on {len(conversations)} conversations of {min(lengths)}-{max(lengths)} tokens "
          f"({positions} positions, packed in {len(input_ids)} rows of {ROW_LENGTH}): "
          f"max |ours - transformers| = {worst:.2e}")
    assert min(lengths) >= 200 and max(lengths) <= 700
    assert worst <= MAX_ABS_DIFFERENCE
