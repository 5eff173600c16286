"""The RLVR stage's config: the policy (``model``, as in SFT and DPO) and where the value model starts, how
rollouts are drawn and scored, the RL objective (registry names), the optimizers, and the run's length,
logging, evaluation and checkpointing.

Defaults are the Tülu 3 8B RLVR settings (RECIPE.md section 7). One "step" of this stage is one rollout
batch: ``rollout.prompts_per_step × rollout.samples_per_prompt`` responses, then ``ppo.epochs ×
ppo.minibatches`` optimizer updates. The train state's ``step`` counts rollout steps; the learning-rate
schedule counts optimizer updates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from data_pipeline.config import DataConfig
from tulu_jax.checkpoint import CheckpointConfig
from tulu_jax.errors import ConfigError
from tulu_jax.objectives.registry import RLObjectiveConfig, advantage_estimator_entry
from tulu_jax.sharding import MeshConfig
from tulu_jax.stages.model_source import ModelConfig
from tulu_jax.stages.rlvr.numbers import check_rlvr_numbers
from tulu_jax.stages.rlvr.value_init import VALUE_INITS, value_init_entry
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig


@dataclass(frozen=True)
class ValueSourceConfig:
    """Where the PPO value model starts: ``reward_model`` (``path``: the output_dir of a ``tulu-jax rm`` run; the Tülu 3
    choice), ``policy`` (the policy's trunk with a zero head), or ``scratch`` (random trunk, zero head)."""

    init: str = "reward_model"  # a name in value_init.VALUE_INITS
    path: str = ""

    def __post_init__(self) -> None:
        if value_init_entry(self.init).needs_path and not self.path:
            others = " or ".join(repr(name) for name, entry in VALUE_INITS.items() if not entry.needs_path)
            raise ConfigError(
                f"value.init is {self.init!r} but value.path is empty; give the reward model's directory, "
                f"or set value.init to {others}"
            )


SAMPLERS = ("continuous", "static")


@dataclass(frozen=True)
class RolloutConfig:
    prompts_per_step: int = 224
    samples_per_prompt: int = 1  # GRPO's group size G (must equal objective.group_size)
    max_new_tokens: int = 2048
    temperature: float = 1.0  # also used for the learner's log-probs, so the two agree
    top_k: int = 0
    top_p: float = 1.0
    verifiable_reward: float = 10.0  # α: the score of a verified response
    nonstop_penalty: Optional[float] = None  # e.g. -10.0: the score of a response that never emitted EOS
    # The sampler (generation.continuous on generation.sampling_layout): chips per sampling group (0: the
    # smallest group whose share of the bf16 weights fits the free HBM), rows decoding at once per group
    # (0: a quarter of the group's rows), KV page size in tokens.
    sampling_group: int = 0
    decode_slots: int = 0
    page_size: int = 16
    sampler: str = "continuous"  # or "static": the reference, every row on the training layout until the last stops
    # Asynchronous RLVR (stages/rlvr/async_rollouts.py): rollouts up to async_steps learner versions ahead, on
    # their own sampler_chips (0: half the slice; `tulu-jax plan` advises a split). 0 is the synchronous recipe.
    async_steps: int = 0
    sampler_chips: int = 0

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"rollout.sampler must be one of {', '.join(SAMPLERS)}, got {self.sampler!r}")
        if self.async_steps < 0:
            raise ConfigError(f"rollout.async_steps must be >= 0 (0 = synchronous), got {self.async_steps}")
        for name in ("sampling_group", "decode_slots", "sampler_chips"):
            if getattr(self, name) < 0:
                raise ConfigError(f"rollout.{name} must be >= 0 (0 = automatic), got {getattr(self, name)}")
        for name in ("prompts_per_step", "samples_per_prompt", "max_new_tokens", "page_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"rollout.{name} must be at least 1, got {getattr(self, name)}")
        if self.async_steps and self.sampler == "static":
            raise ConfigError("rollout.async_steps >= 1 needs rollout.sampler: continuous (the sampler's own chips "
                              "hold the policy in the sampling layout; the static sampler reads the training layout)")
        if self.temperature <= 0:
            raise ConfigError(
                f"rollout.temperature must be positive for RL (log-probs are taken at this temperature), got {self.temperature}"
            )

    @property
    def responses_per_step(self) -> int:
        return self.prompts_per_step * self.samples_per_prompt


@dataclass(frozen=True)
class PPOConfig:
    epochs: int = 4  # passes over each rollout batch
    minibatches: int = 1  # optimizer updates per pass
    micro_batches: int = 1  # gradient-accumulation splits of each minibatch (memory only)
    value_loss_coef: float = 0.1
    logprob_chunk: int = 256  # positions per chunk of the vocabulary projection

    def __post_init__(self) -> None:
        for name in ("epochs", "minibatches", "micro_batches", "logprob_chunk"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ppo.{name} must be at least 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class RLVRTrainingConfig:
    """The run's length and logging; the logger options are named as in SFT's and DPO's ``training:``."""

    steps: int = 0  # rollout steps; 0: episodes // responses per step
    episodes: int = 100_000  # responses generated over the run (used when steps is 0)
    log_every: int = 1
    tensorboard: bool = True
    wandb_project: Optional[str] = None  # log to W&B too (needs `pip install wandb`)
    record_batches: bool = False  # write a fingerprint of every prompt batch to batches.jsonl (resume checks)
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise ConfigError(f"training.log_every must be at least 1, got {self.log_every}")


@dataclass(frozen=True)
class RLVREvalConfig:
    every: int = 100  # rollout steps between evaluations on the held-out prompts; 0: only at the end
    max_prompts: int = 0  # 0: all held-out prompts
    max_new_tokens: int = 0  # 0: rollout.max_new_tokens
    batch_size: int = 0  # prompts per evaluation batch; 0: the rollout batch's rows (prompts × samples)
    # Tülu 3 kept the checkpoint that scored best on the dev evals. With keep_best the starting policy is
    # evaluated too, every new best is saved as a checkpoint step under output_dir/best, and that is exported.
    keep_best: bool = False


@dataclass(frozen=True)
class RLVRConfig:
    model: ModelConfig = field(default_factory=ModelConfig)  # the policy; the frozen reference is its start
    value: ValueSourceConfig = field(default_factory=lambda: ValueSourceConfig(init="policy"))
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    objective: RLObjectiveConfig = field(default_factory=RLObjectiveConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(learning_rate=3e-7, eps=1e-5))
    value_optimizer: Optional[OptimizerConfig] = None  # None: the policy's optimizer settings
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(kind="linear", warmup_ratio=0.0))
    training: RLVRTrainingConfig = field(default_factory=RLVRTrainingConfig)
    evaluation: RLVREvalConfig = field(default_factory=RLVREvalConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    mesh: MeshConfig = field(default_factory=MeshConfig)
    output_dir: str = "runs/rlvr"
    seed: int = 1

    def __post_init__(self) -> None:
        check_rlvr_numbers(self)
        objective, rollout = self.objective, self.rollout
        estimator = advantage_estimator_entry(objective.advantage_estimator)
        if estimator.needs_groups:
            if rollout.samples_per_prompt < 2:
                raise ConfigError(
                    f"objective.advantage_estimator {objective.advantage_estimator!r} compares the samples of one "
                    f"prompt, but rollout.samples_per_prompt is {rollout.samples_per_prompt}; set it (and "
                    "objective.group_size) to 2 or more (Tülu 3.1 GRPO: 16)"
                )
            if objective.group_size != rollout.samples_per_prompt:
                raise ConfigError(
                    f"objective.group_size ({objective.group_size}) must equal rollout.samples_per_prompt "
                    f"({rollout.samples_per_prompt}): {objective.advantage_estimator} normalises over the samples "
                    "of one prompt"
                )
        if rollout.responses_per_step % self.ppo.minibatches:
            raise ConfigError(
                f"{rollout.responses_per_step} responses per step do not split into ppo.minibatches="
                f"{self.ppo.minibatches}; make prompts_per_step × samples_per_prompt a multiple of it"
            )
        if (rollout.responses_per_step // self.ppo.minibatches) % self.ppo.micro_batches:
            raise ConfigError("each PPO minibatch must split evenly into ppo.micro_batches")
        if self.total_steps < 1:
            raise ConfigError(
                f"the run has no rollout steps (training.steps={self.training.steps}, training.episodes="
                f"{self.training.episodes}, {rollout.responses_per_step} responses per step); raise steps or episodes"
            )

    @property
    def uses_value_model(self) -> bool:
        return advantage_estimator_entry(self.objective.advantage_estimator).needs_value_model

    @property
    def total_steps(self) -> int:
        """Rollout steps of the whole run."""
        training = self.training
        return training.steps if training.steps > 0 else training.episodes // self.rollout.responses_per_step

    @property
    def updates_per_step(self) -> int:
        return self.ppo.epochs * self.ppo.minibatches
