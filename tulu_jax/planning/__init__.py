"""Ahead-of-time plans: compile a stage's train step for a TPU slice on a CPU machine and measure its fit."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from tulu_jax.planning.chips import CHIPS, ChipSpec, Topology, parse_topology
from tulu_jax.planning.compile import CompiledStep, compile_step
from tulu_jax.planning.estimate import training_flops
from tulu_jax.planning.report import Plan, render
from tulu_jax.planning.target import PlanTarget, load_plan_target


def plan_step(
    config: str | Path | PlanTarget,
    topology: str | Topology,
    overrides: Sequence[str] = (),
    stage: Optional[str] = None,
) -> Plan:
    """Compile the config's train step for ``topology``; a step too large for HBM is a plan that does not fit."""
    target = config if isinstance(config, PlanTarget) else load_plan_target(config, overrides, stage)
    slice_ = topology if isinstance(topology, Topology) else parse_topology(topology)
    return Plan(target, slice_, compile_step(target, slice_))


__all__ = [
    "CHIPS", "ChipSpec", "CompiledStep", "Plan", "PlanTarget", "Topology", "compile_step", "load_plan_target",
    "parse_topology", "plan_step", "render", "training_flops",
]
