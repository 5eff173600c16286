"""Pack token examples into fixed-length rows (``segment_ids`` 1..k, 0 for padding; ``positions`` restart
per example), or pad one example per row. No example is ever split across rows."""

from __future__ import annotations

import bisect
from typing import Sequence

import numpy as np

from data_pipeline.examples import IGNORE_INDEX, TokenizedExample

ROW_KEYS = ("input_ids", "labels", "segment_ids", "positions")


def assign_rows_best_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Best-fit decreasing: longest first, each into the open row with the least room that still fits.

    Returns the example indices of each row; deterministic (ties broken by example index).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    open_rows: list[tuple[int, int]] = []  # sorted (room left, row number)
    for index in order:
        length = lengths[index]
        if length > capacity:
            raise ValueError(f"example {index} has {length} tokens, more than the row length {capacity}")
        slot = bisect.bisect_left(open_rows, (length, -1))
        if slot < len(open_rows):
            room, row = open_rows.pop(slot)
        else:
            room, row = capacity, len(rows)
            rows.append([])
        rows[row].append(index)
        if room - length > 0:
            bisect.insort(open_rows, (room - length, row))
    return rows


def _fill_rows(examples: Sequence[TokenizedExample], rows: list[list[int]], length: int, pad_id: int) -> dict:
    count = len(rows)
    batch = {
        "input_ids": np.full((count, length), pad_id, np.int32),
        "labels": np.full((count, length), IGNORE_INDEX, np.int32),
        "segment_ids": np.zeros((count, length), np.int32),
        "positions": np.zeros((count, length), np.int32),
    }
    for row, members in enumerate(rows):
        start = 0
        for segment, index in enumerate(members, start=1):
            example = examples[index]
            end = start + len(example)
            batch["input_ids"][row, start:end] = example.input_ids
            batch["labels"][row, start:end] = example.labels
            batch["segment_ids"][row, start:end] = segment
            batch["positions"][row, start:end] = np.arange(len(example))
            start = end
    return batch


def pack_examples(examples: Sequence[TokenizedExample], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Pack examples (each at most ``length`` tokens) into rows; arrays are int32 ``[rows, length]``."""
    rows = assign_rows_best_fit([len(example) for example in examples], length)
    return _fill_rows(examples, rows, length, pad_id)


def pad_examples(examples: Sequence[TokenizedExample], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """One example per row, right-padded to ``length`` (segment id 1 on real tokens)."""
    return _fill_rows(examples, [[index] for index in range(len(examples))], length, pad_id)


def packing_efficiency(rows: dict[str, np.ndarray]) -> float:
    """Fraction of row positions holding real tokens (not padding)."""
    segment_ids = rows["segment_ids"]
    return float(np.count_nonzero(segment_ids)) / max(segment_ids.size, 1)


def left_pad(sequences: Sequence[np.ndarray], pad_id: int, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Left-pad prompts to a common length: ``prompt_ids`` and ``prompt_mask`` int32 ``[batch, length]``."""
    length = length or max((len(sequence) for sequence in sequences), default=0)
    ids = np.full((len(sequences), length), pad_id, np.int32)
    mask = np.zeros((len(sequences), length), np.int32)
    for row, sequence in enumerate(sequences):
        if len(sequence):
            ids[row, length - len(sequence):] = sequence
            mask[row, length - len(sequence):] = 1
    return ids, mask
