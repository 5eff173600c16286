"""Schedules against their formulas, the weight-decay mask, and one AdamW step against NumPy."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.errors import ConfigError
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig, decay_mask, make_optimizer, make_schedule


def test_linear_schedule_with_warmup_ratio_matches_the_hf_formula():
    total, peak = 100, 5e-6
    warmup = math.ceil(0.03 * total)  # open-instruct / HF get_linear_schedule_with_warmup
    schedule = make_schedule(peak, ScheduleConfig(kind="linear", warmup_ratio=0.03), total)
    for step in range(total):
        expected = peak * (step / warmup if step < warmup else max(0.0, (total - step) / (total - warmup)))
        assert float(schedule(step)) == pytest.approx(expected, rel=1e-5, abs=1e-12)


def test_cosine_and_constant_schedules_with_warmup_steps():
    cosine = make_schedule(1.0, ScheduleConfig(kind="cosine", warmup_steps=10, final_lr_ratio=0.1), 110)
    for step in (0, 5, 10, 60, 109):
        expected = step / 10 if step < 10 else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - 10) / 100))
        assert float(cosine(step)) == pytest.approx(expected, rel=1e-5)
    constant = make_schedule(2.0, ScheduleConfig(kind="constant", warmup_steps=0), 50)
    assert [float(constant(s)) for s in (0, 25, 49)] == [2.0, 2.0, 2.0]


def test_decay_mask_spares_norms_and_embeddings():
    params = {"embed_tokens": {"embedding": 0}, "norm": {"scale": 0}, "lm_head": {"kernel": 0},
              "layers": {"mlp": {"up_proj": {"kernel": 0}}, "input_layernorm": {"scale": 0}}}
    mask = decay_mask(params)
    assert mask == {"embed_tokens": {"embedding": False}, "norm": {"scale": False}, "lm_head": {"kernel": True},
                    "layers": {"mlp": {"up_proj": {"kernel": True}}, "input_layernorm": {"scale": False}}}
    assert decay_mask(params, decay_embeddings=True)["embed_tokens"]["embedding"] is True


def test_one_adamw_step_with_clipping_matches_numpy():
    config = OptimizerConfig(learning_rate=0.1, beta1=0.9, beta2=0.99, eps=1e-8, weight_decay=0.5, max_grad_norm=1.0)
    optimizer = make_optimizer(config, lambda step: 0.1)
    params = {"w": {"kernel": jnp.array([1.0, -2.0])}, "n": {"scale": jnp.array([3.0])}}
    grads = {"w": {"kernel": jnp.array([3.0, 4.0])}, "n": {"scale": jnp.array([0.0])}}
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    # NumPy: clip to norm 1 (norm 5 -> scale 0.2), bias-corrected Adam moments, decoupled decay on kernels only.
    g = np.array([3.0, 4.0]) * 0.2
    m_hat, v_hat = (0.1 * g) / 0.1, (0.01 * g**2) / 0.01
    expected_kernel = -0.1 * (m_hat / (np.sqrt(v_hat) + 1e-8) + 0.5 * np.array([1.0, -2.0]))
    np.testing.assert_allclose(np.asarray(updates["w"]["kernel"]), expected_kernel, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["n"]["scale"]), [0.0], atol=1e-12)


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match="optimizer.beta2"):
        OptimizerConfig(beta2=1.0)
    with pytest.raises(ConfigError, match="schedule.warmup_ratio"):
        ScheduleConfig(warmup_ratio=1.5)


@pytest.mark.parametrize("max_grad_norm", [-1.0, 0.0, None])
def test_non_positive_max_grad_norm_means_no_clipping_never_a_sign_flip(max_grad_norm):
    # open-instruct writes -1 for "no clipping"; optax.clip_by_global_norm(-1) would flip the gradient.
    params = {"w": {"kernel": jnp.array([1.0, -2.0])}}
    grads = {"w": {"kernel": jnp.array([3.0, 4.0])}}
    unclipped = OptimizerConfig(learning_rate=0.1, max_grad_norm=max_grad_norm)
    assert not unclipped.clips and OptimizerConfig(max_grad_norm=0.5).clips
    reference = make_optimizer(OptimizerConfig(learning_rate=0.1, max_grad_norm=1e9), lambda step: 0.1)
    optimizer = make_optimizer(unclipped, lambda step: 0.1)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    expected, _ = reference.update(grads, reference.init(params), params)
    np.testing.assert_allclose(np.asarray(updates["w"]["kernel"]), np.asarray(expected["w"]["kernel"]), rtol=1e-6)
    assert np.all(np.asarray(updates["w"]["kernel"]) < 0)  # a descent step for a positive gradient


@pytest.mark.parametrize("value", ["nan", ".nan", "inf", ".inf", "-.inf", "1e39", "2.0", "-1e-5"])
def test_absurd_learning_rates_are_refused_at_load_naming_the_key(value):
    from dataclasses import dataclass, field

    from tulu_jax.config import load_config

    @dataclass(frozen=True)
    class Stage:
        optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)

    with pytest.raises(ConfigError, match="optimizer.learning_rate"):
        load_config(Stage, None, [f"optimizer.learning_rate={value}"])
    assert load_config(Stage, None, ["optimizer.learning_rate=1e-6"]).optimizer.learning_rate == 1e-6


def test_non_finite_optimizer_numbers_are_refused():
    for name in ("eps", "weight_decay", "max_grad_norm"):
        with pytest.raises(ConfigError, match=f"optimizer.{name} must be a finite number"):
            OptimizerConfig(**{name: float("nan")})
