"""Dr. GRPO's token-sum loss aggregation as a registry entry, against its NumPy formula."""

import jax.numpy as jnp
import numpy as np

from tulu_jax.objectives import RLObjectiveConfig
from tulu_jax.objectives.registry import aggregate_policy_loss, get_loss_aggregation, get_policy_loss

from . import numpy_reference as ref


def _batch(seed=5, rows=6, length=9):
    rng = np.random.default_rng(seed)
    old = -rng.exponential(size=(rows, length))
    new = old + rng.normal(0, 0.3, size=(rows, length))
    reference = old + rng.normal(0, 0.2, size=(rows, length))
    advantages = np.repeat(rng.normal(size=(rows, 1)), length, axis=1)
    mask = (np.arange(length)[None, :] < rng.integers(1, length + 1, size=rows)[:, None]).astype(np.float64)
    return [a.astype(np.float32).astype(np.float64) for a in (new, old, reference, advantages, mask)]


def test_token_sum_divides_by_responses_times_length():
    new, old, reference, advantages, mask = _batch()
    config = RLObjectiveConfig(advantage_estimator="grpo", policy_loss="grpo", loss_aggregation="token_sum",
                               kl_beta=0.01, group_size=2)
    per_token, _ = get_policy_loss("grpo")(*(jnp.asarray(a, jnp.float32) for a in (new, old, reference, advantages,
                                                                                   mask)), config)
    loss = aggregate_policy_loss(per_token, mask, get_loss_aggregation("token_sum")(jnp.asarray(mask)))
    term = ref.clipped_policy_term(new, old, advantages, 0.2) + 0.01 * ref.kl(new, reference, "k3")
    np.testing.assert_allclose(loss, ref.token_sum_loss(term, mask), rtol=1e-5, atol=1e-7)
    # Unlike the token mean, a response's weight per token does not shrink as it grows.
    assert not np.isclose(ref.token_sum_loss(term, mask), ref.masked_mean(term, mask))


def test_micro_batches_add_up_to_the_minibatch():
    new, old, _, advantages, mask = _batch(seed=6)
    config = RLObjectiveConfig(loss_aggregation="token_sum")
    per_token, _ = get_policy_loss("ppo")(*(jnp.asarray(a, jnp.float32) for a in (new, old, old, advantages, mask)),
                                          config)
    normaliser = get_loss_aggregation("token_sum")(jnp.asarray(mask))  # of the whole minibatch
    whole = aggregate_policy_loss(per_token, mask, normaliser)
    halves = sum(aggregate_policy_loss(per_token[part], mask[part], normaliser) for part in (slice(0, 3), slice(3, 6)))
    np.testing.assert_allclose(halves, whole, rtol=1e-6)
