"""Ahead-of-time plans: compile a stage's programs for a TPU slice on a CPU machine and measure their fit."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence

from tulu_jax.planning.async_plan import async_steps_of, plan_async
from tulu_jax.planning.chips import CHIPS, ChipSpec, Topology, parse_topology
from tulu_jax.planning.compile import CompiledProgram, compile_program, compile_stage
from tulu_jax.planning.estimate import training_flops
from tulu_jax.planning.host_memory import HostMemory, host_memory
from tulu_jax.planning.report import Plan, render
from tulu_jax.planning.target import PLANNABLE_STAGES, PlanTarget, load_plan_target


def plan_stage(
    config: str | Path | PlanTarget,
    topology: str | Topology,
    overrides: Sequence[str] = (),
    stage: Optional[str] = None,
    model: Optional[str] = None,
) -> Plan:
    """Compile every program of the config's stage for ``topology``; a program too large for HBM is a plan
    that does not fit (``Plan.fits``), not an error."""
    target = config if isinstance(config, PlanTarget) else load_plan_target(config, overrides, stage, model)
    slice_ = topology if isinstance(topology, Topology) else parse_topology(topology)
    mesh_shape, programs = compile_stage(target, slice_)
    host = host_memory(target.stage, target.stage_config, target.model, slice_)
    plan = Plan(target, slice_, mesh_shape, tuple(programs), host)
    if async_steps_of(target) >= 1:  # the sub-mesh plan beside the synchronous one it is compared with
        plan = dataclasses.replace(plan, asynchronous=plan_async(target, plan))
    return plan


plan_step = plan_stage  # the name the SFT-only planner had


__all__ = [
    "CHIPS", "ChipSpec", "CompiledProgram", "HostMemory", "PLANNABLE_STAGES", "Plan", "PlanTarget", "Topology",
    "compile_program", "compile_stage", "load_plan_target", "parse_topology", "plan_stage", "plan_step", "render",
    "training_flops",
]
