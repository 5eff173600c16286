import numpy as np

from tulu_jax.objectives import IGNORE_INDEX, next_token_targets

from . import numpy_reference as ref


def test_packed_row_written_by_hand():
    # Row: example 1 = tokens 11 12 13 (11 is prompt), example 2 = 21 22 (21 is prompt), then padding.
    labels = np.array([[-100, 12, 13, -100, 22, -100, -100]])
    segment_ids = np.array([[1, 1, 1, 2, 2, 0, 0]])
    targets, mask = next_token_targets(labels, segment_ids)
    # t=0 predicts 12, t=1 predicts 13, t=2 would cross into example 2, t=3 predicts 22, the rest is padding.
    np.testing.assert_array_equal(np.asarray(mask), [[1, 1, 0, 1, 0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(targets), [[12, 13, 0, 22, 0, 0, 0]])
    assert targets.dtype == np.int32 and mask.dtype == np.float32


def test_random_packed_rows_match_the_loop_reference():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 50, size=(4, 33))
    labels[rng.random(labels.shape) < 0.3] = IGNORE_INDEX
    segment_ids = np.sort(rng.integers(0, 4, size=(4, 33)), axis=1)[:, ::-1]  # runs of ids, zeros (padding) last
    targets, mask = next_token_targets(labels, segment_ids)
    expected_targets, expected_mask = ref.next_token_targets(labels, segment_ids)
    np.testing.assert_array_equal(np.asarray(mask), expected_mask)
    np.testing.assert_array_equal(np.asarray(targets), expected_targets)
    assert 0 < expected_mask.sum() < expected_mask.size  # the case exercises both kinds of positions


def test_without_segment_ids_only_labels_and_the_last_position_mask():
    labels = np.array([[5, 6, -100, 8]])
    targets, mask = next_token_targets(labels)
    np.testing.assert_array_equal(np.asarray(mask), [[1, 0, 1, 0]])
    np.testing.assert_array_equal(np.asarray(targets), [[6, 0, 8, 0]])
