"""The ``training:`` section of SFT, DPO and the reward model (how long, how big a batch, how often to log), and
their ``evaluation:`` section (how often and how much of the held-out split)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tulu_jax.errors import ConfigError


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = 128  # rows (sequences) per optimizer step, over all devices and hosts
    micro_batches: int = 1  # gradient accumulation: the batch is split into this many scanned micro-batches
    epochs: int = 1
    max_steps: Optional[int] = None  # stop after this many optimizer steps (overrides epochs when smaller)
    log_every: int = 10
    peak_flops_per_device: Optional[float] = None  # for MFU; None: spec sheet for TPUs, a timed matmul otherwise
    tensorboard: bool = True
    wandb_project: Optional[str] = None  # log to W&B too (needs `pip install wandb`)
    record_batches: bool = False  # write a fingerprint of every batch to batches.jsonl (resume checks)
    progress_bar: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "micro_batches", "epochs", "log_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"training.{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size % self.micro_batches:
            raise ConfigError(
                f"training.batch_size ({self.batch_size}) must be a multiple of training.micro_batches "
                f"({self.micro_batches})"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"training.max_steps must be at least 1, got {self.max_steps}")

    def total_steps(self, steps_per_epoch: int) -> int:
        steps = self.epochs * steps_per_epoch
        return min(steps, self.max_steps) if self.max_steps is not None else steps


@dataclass(frozen=True)
class EvaluationConfig:
    every: int = 0  # optimizer steps between evaluations on the held-out split; 0: only at the end
    max_batches: Optional[int] = None  # cap on evaluation batches (None: the whole split)

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError(f"evaluation.every must be non-negative, got {self.every}")
        if self.max_batches is not None and self.max_batches < 1:
            raise ConfigError(f"evaluation.max_batches must be at least 1, got {self.max_batches}")


# The held-out evaluation's keys in the ``training:`` section before they had a section of their own.
EVALUATION_RENAMES = {"training.eval_every": "evaluation.every", "training.eval_batches": "evaluation.max_batches"}
