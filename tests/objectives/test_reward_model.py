import jax.numpy as jnp
import numpy as np

from tulu_jax.objectives import bradley_terry_loss, last_token_index, scores_at_last_token

from . import numpy_reference as ref


def test_bradley_terry_matches_numpy():
    rng = np.random.default_rng(1)
    chosen = rng.normal(size=16).astype(np.float32)
    rejected = rng.normal(size=16).astype(np.float32)
    loss, metrics = bradley_terry_loss(jnp.asarray(chosen), jnp.asarray(rejected))
    margin = chosen.astype(np.float64) - rejected
    np.testing.assert_allclose(loss, -ref.log_sigmoid(margin).mean(), rtol=1e-6)
    np.testing.assert_allclose(metrics["accuracy"], (margin > 0).mean())
    np.testing.assert_allclose(metrics["margin"], margin.mean(), rtol=1e-6, atol=1e-7)
    assert 0 < float(metrics["accuracy"]) < 1


def test_last_token_index_for_right_left_and_empty_rows():
    mask = np.array(
        [
            [1, 1, 1, 0, 0],  # right-padded
            [0, 0, 1, 1, 1],  # left-padded
            [1, 1, 1, 1, 1],  # full
            [0, 0, 0, 0, 0],  # empty
        ]
    )
    np.testing.assert_array_equal(last_token_index(mask), [2, 4, 4, 0])
    segment_ids = np.array([[1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(last_token_index(segment_ids), [1])


def test_scores_at_last_token_picks_the_right_column():
    scores = jnp.arange(10.0).reshape(2, 5)
    mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]])
    np.testing.assert_array_equal(scores_at_last_token(scores, mask), [1.0, 8.0])
