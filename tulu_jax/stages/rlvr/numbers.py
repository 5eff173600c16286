"""The RLVR config's numbers, each checked against the range where it means what its name says.

A NaN reward, ``temperature=inf`` (uniform sampling), a negative clip range or KL weight, ``gamma`` above 1
or a negative ``evaluation.batch_size`` would otherwise run, and fail late with a misleading message or not
at all. Each refusal names the key, the value and the range.
"""

from __future__ import annotations

import math
from typing import Any, Optional

from tulu_jax.errors import ConfigError

# (key, lowest, highest, lowest allowed itself): every value must also be finite.
RANGES = (
    ("rollout.temperature", 0.0, math.inf, False),
    ("rollout.top_p", 0.0, 1.0, False),
    ("rollout.top_k", 0, math.inf, True),
    ("objective.kl_beta", 0.0, math.inf, True),
    ("objective.clip_eps", 0.0, math.inf, False),
    ("objective.value_clip", 0.0, math.inf, True),
    ("objective.gamma", 0.0, 1.0, True),
    ("objective.lam", 0.0, 1.0, True),
    ("ppo.value_loss_coef", 0.0, math.inf, True),
    ("evaluation.every", 0, math.inf, True),
    ("evaluation.batch_size", 0, math.inf, True),
    ("evaluation.max_prompts", 0, math.inf, True),
    ("evaluation.max_new_tokens", 0, math.inf, True),
)
FINITE = ("rollout.verifiable_reward", "rollout.nonstop_penalty")


def check_rlvr_numbers(config: Any) -> None:
    """Raise ``ConfigError`` naming the first key of ``config`` (an ``RLVRConfig``) outside its range."""
    for key in FINITE:
        value = _value(config, key)
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value}: it is the reward a response gets")
    for key, lowest, highest, lowest_allowed in RANGES:
        value = _value(config, key)
        if value is None:
            continue
        low_ok = value >= lowest if lowest_allowed else value > lowest
        if not (math.isfinite(value) and low_ok and value <= highest):
            bound = ">=" if lowest_allowed else ">"
            upper = "" if math.isinf(highest) else f" and <= {highest}"
            raise ConfigError(f"{key} must be finite, {bound} {lowest}{upper}; got {value}")


def _value(config: Any, key: str) -> Optional[float]:
    section, name = key.split(".")
    return getattr(getattr(config, section), name)
