"""Packing never splits an example; segment ids and positions are right; padded mode is one example per row."""

import numpy as np

from data_pipeline.examples import IGNORE_INDEX, TokenizedExample
from data_pipeline.packing import assign_rows_best_fit, left_pad, pack_examples, pad_examples, packing_efficiency


def _examples(lengths):
    # Example i holds tokens 1000*i + (1..n) so each token names its example; every other token trained.
    examples = []
    for i, n in enumerate(lengths):
        ids = np.arange(1, n + 1, dtype=np.int32) + 1000 * i
        labels = np.where(np.arange(n) % 2 == 0, ids, IGNORE_INDEX).astype(np.int32)
        examples.append(TokenizedExample(ids, labels))
    return examples


def test_packed_rows_hold_whole_examples_with_segments_and_positions():
    lengths = [7, 3, 5, 8, 1, 2, 6, 4, 8, 2]
    rows = pack_examples(_examples(lengths), 8, pad_id=0)
    seen = []
    for r in range(len(rows["input_ids"])):
        segments = rows["segment_ids"][r]
        k = segments.max()
        # segment ids run 1..k in order, then zeros (padding) to the end
        nonzero = segments[segments > 0]
        assert list(np.unique(nonzero)) == list(range(1, k + 1)) and np.all(np.diff(nonzero) >= 0)
        assert np.all(segments[len(nonzero):] == 0)
        for s in range(1, k + 1):
            where = segments == s
            ids = rows["input_ids"][r][where]
            example = int(ids[0]) // 1000
            assert ids.tolist() == (np.arange(1, lengths[example] + 1) + 1000 * example).tolist()  # whole example
            assert rows["positions"][r][where].tolist() == list(range(lengths[example]))
            seen.append(example)
        assert np.all(rows["labels"][r][segments == 0] == IGNORE_INDEX)
        assert np.all(rows["input_ids"][r][segments == 0] == 0)
    assert sorted(seen) == list(range(len(lengths)))
    # 46 tokens fit in 6 rows of 8 at best; best-fit decreasing reaches it here.
    assert len(rows["input_ids"]) == 6
    assert packing_efficiency(rows) == sum(lengths) / (6 * 8)


def test_best_fit_prefers_the_tightest_row():
    # Rows after 6 and 5: room 4 and 5. A 4 goes to the room-4 row, then a 5 fills the other.
    assert assign_rows_best_fit([6, 5, 4, 5], 10) == [[0, 2], [1, 3]]


def test_padded_mode_is_one_example_per_row():
    rows = pad_examples(_examples([3, 5]), 6, pad_id=9)
    assert rows["input_ids"].tolist() == [[1, 2, 3, 9, 9, 9], [1001, 1002, 1003, 1004, 1005, 9]]
    assert rows["segment_ids"].tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]
    assert rows["positions"][1].tolist() == [0, 1, 2, 3, 4, 0]
    assert rows["labels"][0].tolist() == [1, -100, 3, -100, -100, -100]
    assert all(array.dtype == np.int32 for array in rows.values())


def test_left_pad():
    ids, mask = left_pad([np.array([5, 6]), np.array([7])], pad_id=0, length=3)
    assert ids.tolist() == [[0, 5, 6], [0, 0, 7]] and mask.tolist() == [[0, 1, 1], [0, 0, 1]]
