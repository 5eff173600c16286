"""The off-policy correction's effect, on a logits table: a stale sampler, the learner's KL to it.

The learner is a table of logits ``[positions, vocab]`` (each position an independent choice; a response is
one token per position, scored by a fixed reward table). The sampler is deliberately stale: its policy is
the learner's starting policy plus a fixed perturbation, and it never receives the learner's updates. Each
rollout step draws a batch from the sampler, recomputes the old log-probs under the learner (as the RLVR
prepare pass does), and takes 2 Adam steps on the registry's GRPO policy loss with the correction under test.

What is measured is ``KL(sampler ‖ learner)`` = E over the sampler's tokens of ``log π_sampler − log
π_learner``: how improbable the learner finds the tokens it is being trained on, the quantity whose
exponential the importance weights are. Under ``none`` each sampled token keeps weight 1 however improbable
the learner already finds it, so the same push is repeated every step and this KL grows linearly with the
steps. Under ``tis`` the push on a token fades with ``π_learner_old / π_sampler`` (as the on-policy gradient
would), so the KL grows only slowly; under ``icepop`` and ``sequence_mask`` it stops once the ratio (of a token, or
a response's geometric mean) leaves ``[1/2, 2]``. With a fresh sampler ``tis`` is ``none`` exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from tulu_jax.objectives.registry import (
    RLObjectiveConfig, aggregate_policy_loss, get_off_policy_correction, get_policy_loss,
)

POSITIONS, VOCAB, ROWS, STEPS, EPOCHS = 4, 8, 256, 160, 2
CHECKPOINTS = (20, 40, 80, 160)  # rollout steps after which the KL is read


def _kl(p_logits, q_logits):
    """Mean over positions of KL(softmax(p) ‖ softmax(q))."""
    log_p, log_q = jax.nn.log_softmax(p_logits, -1), jax.nn.log_softmax(q_logits, -1)
    return jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p - log_q), -1))


def _train(correction: str, stale: bool = True):
    """KL(sampler ‖ learner) after each rollout step, and the learner's final expected reward."""
    rng = np.random.default_rng(0)
    reward = jnp.asarray(rng.random((POSITIONS, VOCAB)), jnp.float32)
    perturbation = jnp.asarray(rng.normal(0.0, 1.0, (POSITIONS, VOCAB)), jnp.float32)
    config = RLObjectiveConfig(advantage_estimator="grpo", policy_loss="grpo", group_size=2, kl_beta=0.0,
                               off_policy_correction=correction)
    policy_loss, weigh = get_policy_loss("grpo"), get_off_policy_correction(correction)
    optimizer = optax.adam(0.05)
    learner = jnp.zeros((POSITIONS, VOCAB))
    mask = jnp.ones((ROWS, POSITIONS))

    def token_logprobs(logits, tokens):  # [ROWS, POSITIONS]
        return jnp.take_along_axis(jax.nn.log_softmax(logits, -1)[None], tokens[..., None], -1)[..., 0]

    def rollout_step(carry, key):
        learner, opt_state = carry
        sampler = perturbation if stale else learner  # the stale one: the starting policy (0) + perturbation
        tokens = jax.random.categorical(key, jnp.broadcast_to(sampler, (ROWS, POSITIONS, VOCAB)))
        scores = jnp.sum(reward[jnp.arange(POSITIONS)[None], tokens], axis=1)
        advantages = jnp.broadcast_to(((scores - scores.mean()) / (scores.std() + 1e-6))[:, None], mask.shape)
        old = token_logprobs(learner, tokens)
        weights, _ = weigh(old, token_logprobs(sampler, tokens), mask, config)

        def loss(logits):
            per_token, _ = policy_loss(token_logprobs(logits, tokens), old, old, advantages, mask, config,
                                       correction=weights)
            return aggregate_policy_loss(per_token, mask, jnp.sum(mask))

        for _ in range(EPOCHS):
            updates, opt_state = optimizer.update(jax.grad(loss)(learner), opt_state)
            learner = optax.apply_updates(learner, updates)
        return (learner, opt_state), _kl(sampler, learner)

    keys = jax.random.split(jax.random.PRNGKey(0), STEPS)
    (learner, _), kls = jax.jit(lambda c: jax.lax.scan(rollout_step, c, keys))((learner, optimizer.init(learner)))
    expected_reward = jnp.mean(jnp.sum(jax.nn.softmax(learner, -1) * reward, -1))
    return np.asarray(kls), float(expected_reward)


@pytest.fixture(scope="module")
def runs():
    return {name: _train(name) for name in ("none", "tis", "icepop", "sequence_mask")}


def test_without_correction_the_kl_to_the_stale_sampler_grows_linearly(runs):
    kls, _ = runs["none"]
    at = {step: kls[step - 1] for step in CHECKPOINTS}
    # every doubling of the steps at least doubles it (measured: 0.94, 2.28, 5.13, 11.0 nats)
    assert at[40] > 1.8 * at[20] and at[80] > 1.8 * at[40] and at[160] > 1.8 * at[80]
    assert at[160] > 8.0


def test_tis_keeps_the_kl_to_the_stale_sampler_bounded(runs):
    none, _ = runs["none"]
    tis, _ = runs["tis"]
    # measured: 0.74, 1.41, 2.01, 2.49 nats: each doubling of the steps adds less than the one before
    assert tis[159] < 3.5
    assert tis[159] - tis[79] < tis[79] - tis[39] < tis[39] - tis[19] + 0.1
    assert tis[159] - tis[79] < 1.0 < none[159] - none[79]
    assert none[159] > 3 * tis[159]


@pytest.mark.parametrize("name", ["icepop", "sequence_mask"])
def test_the_masks_stop_the_push_once_the_ratio_leaves_the_band(runs, name):
    kls, _ = runs[name]
    # measured: icepop 0.62, 0.81, 0.94, 1.03; sequence_mask 0.43, 0.46, 0.46, 0.48 nats
    assert kls[159] < 1.5
    assert kls[159] - kls[79] < 0.2


def test_tis_learns_at_least_as_well_as_none_from_the_stale_sampler(runs):
    _, none_reward = runs["none"]
    _, tis_reward = runs["tis"]
    assert tis_reward >= none_reward - 0.005  # measured: 0.865 against 0.847 (the best table gives 0.93)


def test_with_a_fresh_sampler_tis_is_none():
    fresh_none, none_reward = _train("none", stale=False)
    fresh_tis, tis_reward = _train("tis", stale=False)
    np.testing.assert_allclose(fresh_tis, fresh_none, rtol=1e-6, atol=1e-7)
    assert tis_reward == pytest.approx(none_reward, rel=1e-6)
