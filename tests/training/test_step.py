"""The generic train step with the SFT loss: accumulation equals one big batch, sum vs mean, overfitting."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tulu_jax.models import Llama, init_params, param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.stages.sft import BATCH_KEYS, SFTLossConfig, global_token_count, make_sft_loss
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, make_optimizer, make_schedule
from tulu_jax.training.state import create_train_state, state_shardings
from tulu_jax.training.step import build_train_step, jit_train_step

from tests.training.conftest import micro_config, packed_batch

CONFIG = micro_config()
LENGTH = 24


@pytest.fixture(scope="module")
def mesh():
    return make_mesh(MeshConfig(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1])


@pytest.fixture(scope="module")
def initial_params():
    return jax.device_get(init_params(CONFIG, jax.random.PRNGKey(3)))


def sgd_step(mesh, reduction: str, micro_batches: int):
    """A jitted step with plain SGD (lr 1): the update is minus the gradient, so it shows the gradient itself."""
    schedule = optax.constant_schedule(1.0)
    optimizer = optax.sgd(schedule)
    shardings = state_shardings(mesh, optimizer, param_shapes(CONFIG), param_logical_axes(CONFIG))
    loss_fn = make_sft_loss(CONFIG, SFTLossConfig(reduction=reduction, logits_chunk_size=8))
    step = build_train_step(loss_fn, optimizer, schedule, micro_batches, global_token_count, mesh)
    return jit_train_step(step, mesh, shardings, BATCH_KEYS), optimizer, shardings


@pytest.fixture(scope="module")
def updates(mesh, initial_params):
    """Parameter updates and metrics of one step, for each (reduction, micro_batches)."""
    batch = {key: jnp.asarray(value) for key, value in packed_batch(8, LENGTH, seed=0).items()}
    results = {}
    for reduction in ("sum", "mean"):
        for micro_batches in (1, 4):
            step, optimizer, shardings = sgd_step(mesh, reduction, micro_batches)
            state = create_train_state(initial_params, optimizer, 0, shardings)
            state, metrics = step(state, batch)
            assert step.compile_count == 1
            update = jax.tree.map(lambda new, old: np.asarray(new) - old, jax.device_get(state.params), initial_params)
            results[reduction, micro_batches] = (update, jax.device_get(metrics))
    return batch, results


def numpy_cross_entropy_sum(params, batch) -> tuple[float, float]:
    """Summed next-token cross-entropy over trained tokens, written out in NumPy from full logits."""
    logits = np.asarray(Llama(CONFIG).apply({"params": params}, batch["input_ids"], positions=batch["positions"],
                                            segment_ids=batch["segment_ids"]), np.float64)
    labels, segments = np.asarray(batch["labels"]), np.asarray(batch["segment_ids"])
    total, count = 0.0, 0
    for row in range(labels.shape[0]):
        for t in range(labels.shape[1] - 1):
            if labels[row, t + 1] != -100 and segments[row, t] == segments[row, t + 1] != 0:
                row_logits = logits[row, t]
                log_normaliser = np.log(np.sum(np.exp(row_logits - row_logits.max()))) + row_logits.max()
                total += log_normaliser - row_logits[labels[row, t + 1]]
                count += 1
    return total, count


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_four_micro_batches_of_two_update_like_one_batch_of_eight(updates, reduction):
    _, results = updates
    whole, whole_metrics = results[reduction, 1]
    accumulated, accumulated_metrics = results[reduction, 4]
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(accumulated)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    assert abs(whole_metrics["loss"] - accumulated_metrics["loss"]) <= 1e-5 * abs(whole_metrics["loss"])


def test_losses_match_a_numpy_cross_entropy(updates, initial_params):
    batch, results = updates
    total, count = numpy_cross_entropy_sum(initial_params, batch)
    _, sum_metrics = results["sum", 4]
    _, mean_metrics = results["mean", 4]
    assert sum_metrics["trained_tokens"] == count
    np.testing.assert_allclose(sum_metrics["loss"], total, rtol=1e-5)
    np.testing.assert_allclose(mean_metrics["loss"], total / count, rtol=1e-5)


def test_sum_weighs_every_token_the_same_unlike_averaged_micro_batch_means(updates, initial_params):
    batch, results = updates
    sum_update, sum_metrics = results["sum", 4]
    mean_update, _ = results["mean", 4]
    tokens = sum_metrics["trained_tokens"]
    # The global mean is the sum divided by the global token count: same direction, every token equal.
    for a, b in zip(jax.tree.leaves(sum_update), jax.tree.leaves(mean_update)):
        np.testing.assert_allclose(a / tokens, b, atol=1e-7, rtol=1e-4)
    # Averaging per-micro-batch means (tokens of short micro-batches weigh more) gives another update.
    loss_fn = make_sft_loss(CONFIG, SFTLossConfig(reduction="mean", logits_chunk_size=8))
    grad = jax.jit(jax.grad(lambda p, b: loss_fn(p, b, {})[0]))
    micro_grads = [grad(initial_params, {k: v[i::4] for k, v in batch.items()}) for i in range(4)]
    averaged = jax.tree.map(lambda *g: -sum(g) / 4, *micro_grads)
    largest_gap = max(float(np.max(np.abs(np.asarray(a) - b))) for a, b in
                      zip(jax.tree.leaves(averaged), jax.tree.leaves(mean_update)))
    assert largest_gap > 1e-4


def test_tiny_model_overfits_a_handful_of_examples(mesh):
    config = CONFIG
    schedule = make_schedule(1e-2, ScheduleConfig(kind="constant", warmup_steps=0), 200)
    optimizer = make_optimizer(OptimizerConfig(learning_rate=1e-2, max_grad_norm=1.0), schedule)
    shardings = state_shardings(mesh, optimizer, param_shapes(config), param_logical_axes(config))
    loss_fn = make_sft_loss(config, SFTLossConfig(reduction="sum", logits_chunk_size=8))
    step = jit_train_step(build_train_step(loss_fn, optimizer, schedule, 2, global_token_count, mesh),
                          mesh, shardings, BATCH_KEYS)
    state = create_train_state(jax.device_get(init_params(config, jax.random.PRNGKey(0))), optimizer, 0, shardings)
    batch = {key: jnp.asarray(value) for key, value in packed_batch(4, LENGTH, seed=1).items()}
    for _ in range(150):
        state, metrics = step(state, batch)
    per_token = float(metrics["loss_sum"]) / float(metrics["trained_tokens"])
    assert per_token < 0.05, per_token
    assert step.compile_count == 1
