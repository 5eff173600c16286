"""GSM8K train conversations as right-padded SFT batches with the model's own template, as training encodes them."""

from __future__ import annotations

import numpy as np

from data_pipeline.config import DataConfig
from data_pipeline.examples import IGNORE_INDEX, ExampleEncoder
from tests.helpers.real_conversations import gsm8k_rows, single_turn


def sft_batches(tokenizer, tokenizer_dir, steps: int, rows_per_step: int, length: int) -> list[dict]:
    """``steps`` batches of ``rows_per_step`` GSM8K train conversations (file order, those that fit ``length``):
    input_ids / labels (-100 untrained) / segment_ids (0 on padding) / positions, int32 [rows, length]."""
    encoder = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(tokenizer_dir), chat_template="tokenizer"))
    examples, start = [], 0
    while len(examples) < steps * rows_per_step:
        for row in gsm8k_rows("train", 64, start):
            example = encoder.sft({"messages": single_turn(row)})
            if len(example) <= length:
                examples.append(example)
        start += 64
    batches = []
    for step in range(steps):
        batch = {key: np.zeros((rows_per_step, length), np.int32) for key in ("input_ids", "segment_ids")}
        batch["labels"] = np.full((rows_per_step, length), IGNORE_INDEX, np.int32)
        batch["positions"] = np.broadcast_to(np.arange(length, dtype=np.int32), (rows_per_step, length)).copy()
        for row, example in enumerate(examples[step * rows_per_step : (step + 1) * rows_per_step]):
            batch["input_ids"][row, : len(example)] = example.input_ids
            batch["labels"][row, : len(example)] = example.labels
            batch["segment_ids"][row, : len(example)] = 1
        batches.append(batch)
    return batches
