"""AdamW with a learning-rate schedule, global-norm clipping and a weight-decay mask.

Weight decay applies to matrices only: RMSNorm scales (and biases, had Llama any) are never decayed, and
neither are the token embeddings unless ``decay_embeddings`` is set — decaying an embedding row pulls rare
tokens towards zero just because they are rare. The output projection ``lm_head`` is a matrix like any
other and is decayed. (The Tülu 3 SFT/DPO configs use weight decay 0, so the mask matters only to users
who turn decay on.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

import jax
import optax

from tulu_jax.errors import ConfigError


# A peak learning rate above this is a typo (a missing minus sign in an exponent), not a choice.
MAX_LEARNING_RATE = 1.0


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW settings.

    ``max_grad_norm``: clip the global gradient norm to this value. Zero, a negative value (open-instruct
    writes -1) or None means no clipping; it never scales the gradient by a negative factor.
    """

    learning_rate: float = 5e-6  # peak learning rate, in [0, 1]
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decay_embeddings: bool = False
    max_grad_norm: Optional[float] = 1.0  # <= 0 or None: no clipping

    def __post_init__(self) -> None:
        for name in ("learning_rate", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"optimizer.{name} must be a finite number, got {value}")
        if not 0.0 <= self.learning_rate <= MAX_LEARNING_RATE:
            raise ConfigError(
                f"optimizer.learning_rate must be in [0, {MAX_LEARNING_RATE:g}], got {self.learning_rate}; "
                "fine-tuning rates are around 1e-7 to 1e-4"
            )
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"optimizer.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.eps <= 0:
            raise ConfigError(f"optimizer.eps must be positive, got {self.eps}")
        if self.weight_decay < 0:
            raise ConfigError(f"optimizer.weight_decay must be non-negative, got {self.weight_decay}")

    @property
    def clips(self) -> bool:
        """Whether gradients are clipped (``max_grad_norm`` set and positive)."""
        return self.max_grad_norm is not None and self.max_grad_norm > 0


@dataclass(frozen=True)
class ScheduleConfig:
    """``linear``: warmup then linear decay to ``final_lr_ratio``·lr; ``cosine``: warmup then cosine decay;
    ``constant``: warmup then flat. Warmup is ``warmup_steps`` if set, else ``warmup_ratio`` of all steps."""

    kind: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: float = 0.03
    warmup_steps: Optional[int] = None
    final_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ConfigError(f"schedule.warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"schedule.warmup_steps must be non-negative, got {self.warmup_steps}")
        if not 0.0 <= self.final_lr_ratio <= 1.0:
            raise ConfigError(f"schedule.final_lr_ratio must be in [0, 1], got {self.final_lr_ratio}")

    def resolved_warmup_steps(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return min(self.warmup_steps, total_steps)
        # open-instruct rounds the warmup up (math.ceil of ratio × steps); so do we.
        return min(total_steps, math.ceil(self.warmup_ratio * total_steps))


def make_schedule(peak_lr: float, schedule: ScheduleConfig, total_steps: int) -> optax.Schedule:
    """The learning rate as a function of the optimizer step (0-based); warmup rises from 0 to ``peak_lr``."""
    if total_steps <= 0:
        raise ConfigError(f"the run has {total_steps} optimizer steps; it needs at least one")
    warmup = schedule.resolved_warmup_steps(total_steps)
    decay_steps = max(total_steps - warmup, 1)
    final = peak_lr * schedule.final_lr_ratio
    if schedule.kind == "linear":
        after = optax.linear_schedule(peak_lr, final, decay_steps)
    elif schedule.kind == "cosine":
        after = optax.cosine_decay_schedule(peak_lr, decay_steps, alpha=schedule.final_lr_ratio)
    else:
        after = optax.constant_schedule(peak_lr)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, peak_lr, warmup), after], [warmup])


def decay_mask(params: Any, decay_embeddings: bool = False) -> Any:
    """True for leaves that get weight decay: kernels (and the embedding table if asked), not norm scales."""

    def decays(path, leaf) -> bool:
        names = [str(getattr(entry, "key", getattr(entry, "name", entry))) for entry in path]
        if names[-1] == "embedding":
            return decay_embeddings
        return names[-1] == "kernel"

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(config: OptimizerConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
    """Clip by global norm, then AdamW with ``schedule`` and the decay mask."""
    parts = []
    if config.clips:
        parts.append(optax.clip_by_global_norm(config.max_grad_norm))
    parts.append(
        optax.adamw(
            learning_rate=schedule,
            b1=config.beta1,
            b2=config.beta2,
            eps=config.eps,
            weight_decay=config.weight_decay,
            mask=lambda params: decay_mask(params, config.decay_embeddings),
        )
    )
    return optax.chain(*parts)
