"""The programs a stage runs on its mesh, built by the stage's own step builder, ready to lower abstractly.

Each stage's builder (``stages.sft.build_sft_step``, ``stages.dpo.build_dpo_step``,
``stages.reward_model.build_reward_model_step``) is what the stage trains with; the planner calls the same
function with the config and the compile-only mesh, and adds what it needs to report: the abstract inputs,
what else stays on the chips while a program runs, and the work each call does.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from tulu_jax.planning.estimate import executed_training_flops, forward_flops, training_flops
from tulu_jax.planning.program import Program, abstract
from tulu_jax.planning.rlvr_programs import rlvr_programs
from tulu_jax.planning.target import PlanTarget


def _complete_count(target: PlanTarget, micro_batches: int, chunk: int, length: int) -> bool:
    return not target.model.scan_layers and micro_batches == 1 and -(-length // chunk) == 1


def sft_programs(target: PlanTarget, mesh) -> list[Program]:
    """The SFT train step, from ``stages.sft.build_sft_step``."""
    config = target.stage_config
    built = builder("sft")(config, mesh, target.model)
    batch, length = config.training.batch_size, config.data.max_seq_len
    flops = training_flops(target.model, batch, length)["total"]
    return [Program(
        "train step", built.step, built.abstract_inputs(), batch * length, flops,
        executed_training_flops(target.model, batch, length),
        loops=not _complete_count(target, config.training.micro_batches, config.objective.logits_chunk_size, length),
    )]


def rm_programs(target: PlanTarget, mesh) -> list[Program]:
    """The reward-model step (both sides of every pair in one forward)."""
    config = target.stage_config
    built = builder("rm")(config, mesh, target.model)
    rows, length = 2 * config.training.batch_size, config.data.max_seq_len
    flops = training_flops(target.model, rows, length)["total"]
    return [Program("train step", built.step, built.abstract_inputs(), rows * length, flops,
                    executed_training_flops(target.model, rows, length), loops=target.model.scan_layers or config.training.micro_batches > 1)]


def dpo_programs(target: PlanTarget, mesh) -> list[Program]:
    """The DPO step (chosen and rejected in one forward), with the reference in the step or cached: then the
    reference pass is a second program, run once over the data before training."""
    config = target.stage_config
    built = builder("dpo")(config, mesh, target.model)
    pairs, length, chunk = config.training.batch_size, config.data.max_seq_len, config.objective.logits_chunk_size
    tokens = 2 * pairs * length
    flops = training_flops(target.model, 2 * pairs, length)["total"]
    executed = executed_training_flops(target.model, 2 * pairs, length)
    if built.in_step:  # the frozen reference's forward runs inside the step, on every batch
        executed += forward_flops(target.model, 2 * pairs, length)
    loops = not _complete_count(target, config.training.micro_batches, chunk, length) or built.in_step
    programs = [Program("train step", built.step, built.abstract_inputs(), tokens, flops, executed, loops=loops)]
    if built.reference_pass is not None:
        rows = 2 * built.reference_batch_size
        state = built.abstract_state()
        # The pass runs after the train state exists: its optimizer moments stay on the chips meanwhile.
        programs.insert(0, Program(
            "reference pass", built.reference_pass, built.reference_pass_inputs(), rows * length,
            forward_flops(target.model, rows, length), forward_flops(target.model, rows, length),
            calls_per_step=0.0, resident=(state.opt_state,),
            loops=target.model.scan_layers or -(-length // chunk) > 1,
        ))
    return programs


PROGRAM_BUILDERS: dict[str, Callable[[PlanTarget, Any], list[Program]]] = {
    "sft": sft_programs, "dpo": dpo_programs, "rm": rm_programs, "rlvr": rlvr_programs,
}

# The stage's own step builder for each stage that has one (the planner and the stage call the same one).
STEP_BUILDERS = {
    "sft": ("tulu_jax.stages.sft", "build_sft_step"),
    "dpo": ("tulu_jax.stages.dpo", "build_dpo_step"),
    "rm": ("tulu_jax.stages.reward_model", "build_reward_model_step"),
}


def builder(stage: str) -> Callable:
    """The stage module's step builder, looked up at call time (so a test can watch it being called)."""
    module, name = STEP_BUILDERS[stage]
    return getattr(importlib.import_module(module), name)


def stage_programs(target: PlanTarget, mesh) -> list[Program]:
    return PROGRAM_BUILDERS[target.stage](target, mesh)


__all__ = ["PROGRAM_BUILDERS", "Program", "STEP_BUILDERS", "abstract", "builder", "stage_programs"]
