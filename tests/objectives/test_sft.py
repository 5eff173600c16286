import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.errors import ConfigError
from tulu_jax.objectives import sft_loss


def _batch(seed=0, batch=4, length=12):
    rng = np.random.default_rng(seed)
    logprobs = -rng.exponential(2.0, size=(batch, length))
    mask = np.zeros((batch, length))
    for row, trained in enumerate([2, 9, 5, 0][:batch]):  # unequal trained lengths, one row with none
        mask[row, length - trained - 1 : length - 1] = 1.0
    return logprobs, mask


def test_sum_and_mean_match_numpy_and_ignore_masked_tokens():
    logprobs, mask = _batch()
    expected_sum = -(logprobs * mask).sum()  # RECIPE.md section 4: summed token cross-entropy
    loss_sum, metrics = sft_loss(jnp.asarray(logprobs, jnp.float32), mask, reduction="sum")
    loss_mean, _ = sft_loss(jnp.asarray(logprobs, jnp.float32), mask, reduction="mean")
    np.testing.assert_allclose(loss_sum, expected_sum, rtol=1e-6)
    np.testing.assert_allclose(loss_mean, expected_sum / mask.sum(), rtol=1e-6)
    np.testing.assert_allclose(metrics["loss_sum"], expected_sum, rtol=1e-6)
    assert metrics["trained_tokens"] == mask.sum() == 16
    np.testing.assert_allclose(metrics["per_token_loss"], expected_sum / 16, rtol=1e-6)
    # Prompt/padding positions hold garbage that must not count.
    garbage = np.where(mask == 0, -1e4, logprobs)
    np.testing.assert_allclose(sft_loss(jnp.asarray(garbage, jnp.float32), mask)[0], expected_sum, rtol=1e-6)


def test_micro_batches_add_up_to_the_global_batch_loss_and_gradient():
    logprobs, mask = _batch(seed=1)
    logprobs = jnp.asarray(logprobs, jnp.float32)
    global_tokens = mask.sum()
    micro_batches = [slice(0, 1), slice(1, 3), slice(3, 4)]
    for reduction, count in [("sum", None), ("mean", global_tokens)]:
        loss_of = lambda lp, m: sft_loss(lp, m, reduction=reduction, num_global_tokens=count)[0]  # noqa: E731
        global_loss, global_grad = jax.value_and_grad(loss_of)(logprobs, mask)
        accumulated_loss, accumulated_grad = 0.0, []
        for part in micro_batches:
            loss, grad = jax.value_and_grad(loss_of)(logprobs[part], mask[part])
            accumulated_loss += loss
            accumulated_grad.append(grad)
        np.testing.assert_allclose(accumulated_loss, global_loss, rtol=1e-6)
        np.testing.assert_allclose(np.concatenate(accumulated_grad), global_grad, rtol=1e-6)
    np.testing.assert_allclose(
        sum(sft_loss(logprobs[p], mask[p], "mean", global_tokens)[0] for p in micro_batches),
        -(np.asarray(logprobs) * mask).sum() / global_tokens,
        rtol=1e-6,
    )


def test_sum_weighs_every_token_alike_while_per_example_means_favour_short_examples():
    # Two examples, 2 and 8 trained tokens, each its own micro-batch.
    logprobs = jnp.full((2, 10), -1.0)
    mask = np.zeros((2, 10))
    mask[0, :2] = 1
    mask[1, :8] = 1

    def accumulated(lp, reduction, num_global_tokens):
        return sum(sft_loss(lp[i : i + 1], mask[i : i + 1], reduction, num_global_tokens)[0] for i in range(2))

    def token_weights(reduction, num_global_tokens):
        return -np.asarray(jax.grad(accumulated)(logprobs, reduction, num_global_tokens))

    # sum: every trained token has weight 1.
    np.testing.assert_allclose(token_weights("sum", None), mask)
    np.testing.assert_allclose(accumulated(logprobs, "sum", None), 10.0)
    # mean over the global token count: every token 1/10.
    np.testing.assert_allclose(token_weights("mean", 10), mask / 10, rtol=1e-6)
    # mean within each micro-batch, then summed: a token of the short example counts 4x more.
    weights = token_weights("mean", None)
    np.testing.assert_allclose(weights[0, :2], 0.5)
    np.testing.assert_allclose(weights[1, :8], 0.125)


def test_unknown_reduction_is_a_config_error():
    with pytest.raises(ConfigError, match="allowed: sum, mean"):
        sft_loss(jnp.zeros((1, 2)), jnp.ones((1, 2)), reduction="average")


def test_empty_batch_gives_zero_not_nan():
    loss, metrics = sft_loss(jnp.zeros((1, 3)), jnp.zeros((1, 3)), reduction="mean")
    assert float(loss) == 0.0 and float(metrics["per_token_loss"]) == 0.0
