"""Stage 2 of Tülu 3: direct preference optimisation (length-normalised ``dpo_norm`` by default).

Read top to bottom: config → preference rows with example indices → model → reference log-probs (cached
pass before training, or computed in the step) → preference loss on one forward of chosen+rejected →
jitted step → the stage on the runner → Hugging Face export. Formulas: ../shared/RECIPE.md section 5.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Optional

import jax
import jax.numpy as jnp

from data_pipeline.config import DataConfig
from data_pipeline.paths import as_path
from data_pipeline.work_share import WorkShare
from tulu_jax.errors import ConfigError
from tulu_jax.models import LlamaConfig, param_logical_axes
from tulu_jax.models.params import param_shapes
from tulu_jax.objectives.registry import preference_loss_entry
from tulu_jax.reference_cache import ReferenceLogps
from tulu_jax.sharding import check_batch_divisible
from tulu_jax.stages import preference_training as pt
from tulu_jax.stages.dpo_reference import (
    cached_reference_logps, in_step_reference, jit_reference_pass, reference_cache_key,
)
from tulu_jax.stages.model_source import load_model_params, resolve_model_config
from tulu_jax.stages.preference_batches import PAIR_KEYS, REFERENCE_KEYS, num_pairs, pair_sequence_logps
from tulu_jax.stages.optimizer_setup import optimizer_and_shardings
from tulu_jax.stages.runner import Stage, StagePlan, StageResult, run_stage
from tulu_jax.stages.runner.export import chat_model_export
from tulu_jax.stages.stage_config import BatchStageConfig
from tulu_jax.training.config import EVALUATION_RENAMES
from tulu_jax.training.loop import DeviceStep
from tulu_jax.training.optimizer import OptimizerConfig, ScheduleConfig
from tulu_jax.training.state import TrainState, abstract_state, create_train_state
from tulu_jax.training.step import MeshFunction, build_eval_step, build_train_step

log = logging.getLogger(__name__)

BATCH_RANKS = {**{key: 2 for key in PAIR_KEYS}, **{key: 1 for key in REFERENCE_KEYS}}


@dataclass(frozen=True)
class DPOObjectiveConfig:
    loss_type: str = "dpo_norm"  # a name in the preference-loss registry: dpo | dpo_norm | simpo | ipo | wpo
    beta: float = 5.0
    label_smoothing: float = 0.0
    gamma_beta_ratio: float = 0.3  # simpo's γ/β
    reference: Literal["cached", "in_step"] = "cached"
    reference_model: str = ""  # a preset, HF directory or stage output_dir; "" = the initial policy
    reference_cache_dir: str = ""  # "" = <output_dir>/reference_logps (shared by every host, like checkpoints)
    reference_batch_size: Optional[int] = None  # pairs per reference-pass batch; None = the micro-batch
    logits_chunk_size: int = 1024  # positions whose vocabulary logits exist at once

    def __post_init__(self) -> None:
        preference_loss_entry(self.loss_type, "objective.loss_type")
        if self.beta <= 0:
            raise ConfigError(f"objective.beta must be positive, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"objective.label_smoothing must be in [0, 0.5), got {self.label_smoothing}")

    @property
    def uses_reference(self) -> bool:
        return preference_loss_entry(self.loss_type).uses_reference


@dataclass(frozen=True)
class DPOConfig(BatchStageConfig):
    RENAMED_KEYS: ClassVar[dict] = {"dpo": "objective", **EVALUATION_RENAMES}

    output_dir: str = "runs/dpo"
    data: DataConfig = field(default_factory=lambda: DataConfig(kind="preference", packing="padded", max_seq_len=2048))
    optimizer: OptimizerConfig = field(default_factory=lambda: OptimizerConfig(learning_rate=5e-7))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(kind="linear", warmup_ratio=0.1))
    objective: DPOObjectiveConfig = field(default_factory=DPOObjectiveConfig)


def make_dpo_loss(model_config: LlamaConfig, objective: DPOObjectiveConfig) -> Callable:
    """``loss_fn(params, micro_batch, context)``: policy log-probs of both sides in one forward, then the loss."""
    loss_of_type = preference_loss_entry(objective.loss_type).function

    def loss_fn(params, batch, context):
        policy = pair_sequence_logps(model_config, params, batch, objective.logits_chunk_size)
        loss, metrics = loss_of_type(
            policy["chosen_logps"], policy["rejected_logps"],
            batch["reference_chosen_logps"], batch["reference_rejected_logps"],
            policy["chosen_lengths"], policy["rejected_lengths"],
            beta=objective.beta, label_smoothing=objective.label_smoothing,
            gamma_beta_ratio=objective.gamma_beta_ratio,
        )
        pairs = batch["chosen_input_ids"].shape[0]
        return pt.additive_pair_metrics(loss, metrics, pairs, context["global_pairs"])

    return loss_fn


# The schedule's length changes no shape and no compiled operation: what a plan compiles with.
PLANNED_TOTAL_STEPS = 1000


@dataclass(frozen=True)
class DPOStep:
    """The jitted DPO step (both sides in one forward) and, for a cached reference, the jitted reference pass.

    ``step`` is ``(state, batch) -> (state, metrics)`` with the reference log-probs in the batch (cached, or no
    reference for simpo), or ``(state, batch, reference_params)`` with ``in_step``. ``abstract_inputs()``
    gives sharded ``ShapeDtypeStruct``s to lower either program without data or weights.
    """

    step: MeshFunction
    reference_pass: Optional[MeshFunction]  # (params, pair batch) -> sequence log-probs; None unless cached
    loss_fn: Callable
    optimizer: Any
    schedule: Any
    shardings: Any  # TrainState of NamedShardings
    param_shapes: Any
    in_step: bool
    pairs: int  # pairs per optimizer step
    reference_batch_size: int  # pairs per reference-pass batch
    length: int

    def abstract_state(self):
        return abstract_state(self.optimizer, self.param_shapes, self.shardings)

    def _batch(self, ranks: dict, pairs: int) -> dict:
        shardings = pt.batch_shardings(self.step.mesh, ranks)
        return {key: jax.ShapeDtypeStruct((pairs, self.length)[:rank], jnp.float32 if rank == 1 else jnp.int32,
                                          sharding=shardings[key]) for key, rank in ranks.items()}

    def abstract_params(self):
        return jax.tree.map(lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
                            self.param_shapes, self.shardings.params)

    def abstract_inputs(self) -> tuple:
        """``(state, batch)``, or ``(state, batch, reference_params)`` with ``in_step``."""
        if self.in_step:
            return self.abstract_state(), self._batch({key: 2 for key in PAIR_KEYS}, self.pairs), self.abstract_params()
        return self.abstract_state(), self._batch(BATCH_RANKS, self.pairs)

    def reference_pass_inputs(self) -> tuple:
        """``(params, pair batch)`` of one reference-pass call."""
        return self.abstract_params(), self._batch({key: 2 for key in PAIR_KEYS}, self.reference_batch_size)


def build_dpo_step(config: DPOConfig, mesh, model_config: Optional[LlamaConfig] = None,
                   reference_config: Optional[LlamaConfig] = None, total_steps: int = PLANNED_TOTAL_STEPS) -> DPOStep:
    """The DPO step (and cached reference pass) for ``mesh``: what ``run_dpo`` trains with and ``tulu-jax plan``
    compiles. ``model_config`` defaults to the config's model resolved without a tokenizer; the reference
    model has the policy's shape unless ``reference_config`` says otherwise."""
    objective, training = config.objective, config.training
    model_config = model_config or resolve_model_config(config.model)
    reference_config = reference_config or model_config
    shapes = param_shapes(model_config)
    schedule, optimizer, shardings = optimizer_and_shardings(config, mesh, shapes, param_logical_axes(model_config),
                                                             total_steps)
    loss_fn = make_dpo_loss(model_config, objective)
    train_step = build_train_step(loss_fn, optimizer, schedule, training.micro_batches, pt.global_pairs_context, mesh)
    in_step = objective.uses_reference and objective.reference == "in_step"
    if in_step:
        reference_fn = in_step_reference(reference_config, objective.logits_chunk_size, training.micro_batches, mesh)
        step = pt.jit_pair_step(lambda s, b, r: train_step(s, {**b, **reference_fn(r, b)}), mesh, shardings,
                                {key: 2 for key in PAIR_KEYS}, (shardings.params,))
    else:
        step = pt.jit_pair_step(train_step, mesh, shardings, BATCH_RANKS)
    reference_pass = None
    pass_batch = objective.reference_batch_size or training.batch_size // training.micro_batches
    if objective.uses_reference and objective.reference == "cached":
        check_batch_divisible(pass_batch, mesh, "objective.reference_batch_size")
        reference_pass = jit_reference_pass(reference_config, mesh, shardings.params, objective.logits_chunk_size)
    return DPOStep(step, reference_pass, loss_fn, optimizer, schedule, shardings, shapes, in_step,
                   training.batch_size, pass_batch, config.data.max_seq_len)


class DPOStage(Stage):
    """DPO on the runner: preference rows, the reference log-probs (cached before training, or in the step),
    the DPO step, held-out pair metrics, the chat-model export."""

    def __init__(self, config: DPOConfig):
        super().__init__(config)
        self.frozen_reference = None  # the in_step reference params, set with the training state

    def prepare(self, share: WorkShare) -> StagePlan:
        config, objective = self.config, self.config.objective
        rows = pt.prepare_pairs(config, share)
        model_config, mesh = rows.model_config, rows.mesh
        self.reference_model = dataclasses.replace(config.model, source=objective.reference_model) \
            if objective.reference_model else config.model
        self.reference_config = resolve_model_config(self.reference_model, rows.prepared.tokenizer.vocab_size) \
            if objective.reference_model else model_config
        # Optimizer, shardings, the jitted step and reference pass: the builder the planner compiles too.
        self.built = built = build_dpo_step(config, mesh, model_config, self.reference_config, rows.total_steps)
        self.model_config = model_config
        # The initial policy, read once when first needed; it is also the reference unless dpo.reference_model
        # names another model.
        self.policy = _Lazy(lambda: load_model_params(config.model, model_config, config.seed, built.shardings.params))
        eval_step = build_eval_step(built.loss_fn, pt.global_pairs_context)
        details = {"reference_cache_hit": None, "reference_batches_computed": 0}
        if built.in_step:
            to_device = pt.to_device_fn(mesh, PAIR_KEYS)
            batches = pt.PairBatches(rows.loader, PAIR_KEYS)
            step = DeviceStep(lambda s, b: built.step(s, b, self.frozen_reference), to_device, pt.pair_means)
            reference_fn = in_step_reference(self.reference_config, objective.logits_chunk_size, 1, mesh)
            jitted_eval = pt.jit_pair_eval(lambda p, b, r: eval_step(p, {**b, **reference_fn(r, b)}), mesh,
                                           built.shardings.params, {key: 2 for key in PAIR_KEYS},
                                           (built.shardings.params,))
            evaluate_step, eval_extend = (lambda p, b: jitted_eval(p, b, self.frozen_reference)), None
        else:
            train_reference, eval_reference = self._reference_logps(rows, details)
            to_device = pt.to_device_fn(mesh, tuple(BATCH_RANKS))
            batches = pt.PairBatches(rows.loader, PAIR_KEYS, train_reference.lookup)
            step = DeviceStep(built.step, to_device, pt.pair_means)
            evaluate_step = pt.jit_pair_eval(eval_step, mesh, built.shardings.params, BATCH_RANKS)
            eval_extend = eval_reference.lookup if eval_reference is not None else None
        return StagePlan(
            model_config=model_config, batches=batches, total_steps=rows.total_steps,
            abstract_state=built.abstract_state(), step=step,
            export=chat_model_export(config, model_config, rows.prepared.tokenizer),
            evaluation=pt.pair_evaluation(evaluate_step, rows.eval_rows, PAIR_KEYS, rows.micro_batch, to_device,
                                          config, eval_extend),
            hooks=(pt.pair_throughput(config),), details=details,
        )

    def _reference_logps(self, rows, details: dict) -> tuple[ReferenceLogps, Optional[ReferenceLogps]]:
        """Reference log-probs of the train and eval splits: from the cache (one pass over every pair on a miss),
        or zeros for a loss without a reference (simpo)."""
        config, objective, built = self.config, self.config.objective, self.built
        if not objective.uses_reference:
            eval_zeros = ReferenceLogps.zeros(num_pairs(rows.eval_rows)) if rows.eval_rows is not None else None
            return ReferenceLogps.zeros(num_pairs(rows.train_rows)), eval_zeros
        cache_dir = objective.reference_cache_dir or str(as_path(config.output_dir) / "reference_logps")
        pair_device = pt.to_device_fn(rows.mesh, PAIR_KEYS)
        reference = _Lazy(lambda: self._reference_params(copy=False))
        computed = [0]

        def references(split_rows, split):
            values, hit = cached_reference_logps(
                rows=split_rows, key=reference_cache_key(self.reference_model, self.reference_config, config.seed,
                                                         config.data, split_rows),
                cache_dir=cache_dir, params=reference, reference_pass=lambda p, b: built.reference_pass(p.value, b),
                to_device=pair_device, batch_size=built.reference_batch_size,
                on_compute=lambda batches: computed.__setitem__(0, computed[0] + batches),
            )
            log.info("reference log-probs of the %s split: %s", split, "cache hit" if hit else "computed and cached")
            return values, hit

        train_reference, details["reference_cache_hit"] = references(rows.train_rows, "train")
        eval_reference = references(rows.eval_rows, "eval")[0] if rows.eval_rows is not None else None
        details["reference_batches_computed"] = computed[0]
        return train_reference, eval_reference  # a separately loaded reference model is freed here

    def _reference_params(self, copy: bool):
        """The frozen reference: the initial policy (a copy when the train state's buffers, donated to the first
        step, are the same), or the model dpo.reference_model names."""
        objective, shardings = self.config.objective, self.built.shardings
        if not objective.reference_model:
            policy = self.policy.value
            return jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=shardings.params)(policy) if copy \
                else policy
        if self.reference_config != self.model_config:
            raise ConfigError(f"objective.reference_model {objective.reference_model!r} has another shape than the policy")
        return load_model_params(self.reference_model, self.reference_config, self.config.seed, shardings.params)

    def initial_state(self) -> TrainState:
        return create_train_state(self.policy.value, self.built.optimizer, self.config.seed, self.built.shardings)

    def training_state(self, restored: Optional[TrainState]) -> TrainState:
        state = super().training_state(restored)
        if self.built.in_step:
            self.frozen_reference = self._reference_params(copy=restored is None)
        self.policy = None  # the initial policy is held by the state (or not needed after a resume)
        return state


def run_dpo(config: DPOConfig, resume: Optional[bool] = None, export: bool = True) -> StageResult:
    """Train, checkpoint and (when ``export``) write ``<output_dir>/hf``; ``details`` says whether the
    reference log-probs came from the cache and how many batches of the reference pass this process ran."""
    return run_stage(DPOStage(config), resume, export=export)


class _Lazy:
    """A value made on first use (the reference params are loaded only on a cache miss)."""

    def __init__(self, make: Callable[[], Any]):
        self._make, self._value, self._made = make, None, False

    @property
    def value(self) -> Any:
        if not self._made:
            self._value, self._made = self._make(), True
        return self._value
