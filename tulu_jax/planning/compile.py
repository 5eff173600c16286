"""Compile a stage's programs for a TPU topology on this machine and measure each.

Inputs are abstract (``jax.ShapeDtypeStruct`` with shardings) so nothing the size of the model is
allocated; libtpu compiles for compile-only devices of the requested slice. A stage's programs come from
``planning.programs``, which calls the stage's own step builder.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Optional

from tulu_jax import sharding
from tulu_jax.errors import MeshError
from tulu_jax.planning.chips import ChipSpec, Topology
from tulu_jax.planning.devices import topology_devices
from tulu_jax.planning.hlo_cost import HloCost, read_hlo_cost
from tulu_jax.planning.program import Program, per_chip_bytes
from tulu_jax.planning.programs import stage_programs
from tulu_jax.planning.target import PlanTarget


@dataclass(frozen=True)
class CompiledProgram:
    """What the compiler reports for one program on one chip (every chip runs the same partitioned program)."""

    program: Program
    compile_seconds: float
    argument_bytes: int = 0
    output_bytes: int = 0
    alias_bytes: int = 0  # outputs written in place of donated arguments, counted in both above
    temp_bytes: int = 0
    code_bytes: int = 0
    resident_bytes: int = 0  # other live buffers on the chip meanwhile (Program.resident)
    flops_per_chip: Optional[float] = None
    out_of_memory: Optional[str] = None  # the compiler's refusal, when the program does not fit at all
    required_bytes: Optional[int] = None  # from that refusal, when it names the figure
    hlo: Optional[HloCost] = None  # HBM and ICI traffic per chip read from the optimized HLO

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def total_bytes(self) -> int:
        """Peak footprint per chip: live arguments, outputs not aliased to them, temporaries, code, and what
        stays resident beside the program."""
        if self.required_bytes is not None:
            return self.required_bytes + self.resident_bytes
        return (self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes
                + self.resident_bytes)


def resolve_mesh(target: PlanTarget, topology: Topology):
    """The mesh of ``target.mesh`` over one device per chip; MeshError naming the topology if it does not fit."""
    devices = topology_devices(topology)
    try:
        mesh = sharding.make_mesh(target.mesh, devices)
    except MeshError as error:
        raise MeshError(
            f"{target.source}: the mesh does not fit {topology.requested} ({topology.num_chips} chips): {error}"
        ) from None
    training = getattr(target.stage_config, "training", None)
    if target.stage != "rlvr" and training is not None:  # RLVR checks its rollout rows in rlvr_programs
        if training.batch_size % training.micro_batches:
            raise MeshError(
                f"{target.source}: training.batch_size {training.batch_size} is not divisible by "
                f"training.micro_batches {training.micro_batches}"
            )
        micro_batch = training.batch_size // training.micro_batches
        sharding.check_batch_divisible(
            micro_batch, mesh,
            what=f"{target.source}: the micro-batch (batch_size/micro_batches = {micro_batch} sequences)",
        )
    return mesh


def compile_stage(target: PlanTarget, topology: Topology) -> tuple[tuple[int, int, int], list[CompiledProgram]]:
    """The mesh shape and every program of the stage compiled for ``topology``; out-of-memory is reported, not raised."""
    mesh = resolve_mesh(target, topology)
    mesh_shape = tuple(mesh.shape[axis] for axis in sharding.MESH_AXES)
    try:
        # Built outside the mesh context: shape evaluation runs small eager ops, which compile-only devices cannot.
        programs = stage_programs(target, mesh)
    except MeshError as error:
        raise MeshError(f"{target.source} on {topology.requested}: {error}") from None
    return mesh_shape, [compile_program(program, topology.chip) for program in programs]


def compile_program(program: Program, chip: Optional[ChipSpec] = None) -> CompiledProgram:
    """Lower and compile one program; an out-of-memory refusal is reported in the result. With ``chip``, its
    optimized HLO is read for HBM and ICI traffic (``hlo_cost``)."""
    start = time.perf_counter()
    lowered = program.lower()
    resident = per_chip_bytes(program.resident)
    dump = tempfile.mkdtemp(prefix="tulu-plan-hlo-") if chip is not None else None
    try:
        compiled = lowered.compile(compiler_options=_dump_options(dump)) if dump else lowered.compile()
    except Exception as error:  # noqa: BLE001 - XLA raises a plain runtime error for exhausted memory
        text = str(error)
        if dump:
            shutil.rmtree(dump, ignore_errors=True)
        if "RESOURCE_EXHAUSTED" not in text and "out of memory" not in text.lower():
            raise
        argument_bytes = per_chip_bytes(program.inputs)
        return CompiledProgram(
            program, time.perf_counter() - start, argument_bytes=argument_bytes, resident_bytes=resident,
            out_of_memory=_first_line(text), required_bytes=_refusal_bytes(text, argument_bytes),
        )
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis() or {}
    if isinstance(cost, list):  # older jax returned one dict per program
        cost = cost[0] if cost else {}
    hlo = None
    if chip is not None:
        mesh = program.mesh if program.mesh is not None else program.function.mesh
        hlo = read_hlo_cost(_optimized_hlo(dump), mesh, chip, program.unknown_trip_counts)
        shutil.rmtree(dump, ignore_errors=True)
    return CompiledProgram(
        program,
        compile_seconds=seconds,
        argument_bytes=int(memory.argument_size_in_bytes),
        output_bytes=int(memory.output_size_in_bytes),
        alias_bytes=int(memory.alias_size_in_bytes),
        temp_bytes=int(memory.temp_size_in_bytes),
        code_bytes=int(memory.generated_code_size_in_bytes),
        resident_bytes=resident,
        flops_per_chip=float(cost["flops"]) if "flops" in cost else None,
        hlo=hlo,
    )


def _dump_options(directory: str) -> dict:
    """Have the compiler write its optimized HLO as text. ``compiled.as_text()`` rebuilds the module from its
    proto and fails on some TPU programs ("async-update instruction should have 1 operands but sees 3")."""
    return {"xla_dump_to": directory, "xla_dump_hlo_as_text": True, "xla_dump_hlo_pass_re": "^$"}


def _optimized_hlo(directory: str) -> str:
    dumps = sorted(glob.glob(os.path.join(directory, "*.after_optimizations.txt")), key=os.path.getsize)
    if not dumps:
        raise RuntimeError(f"the compiler wrote no optimized HLO to {directory}")
    with open(dumps[-1]) as file:  # the program itself (the largest, should the compiler dump helpers too)
        return file.read()


_SIZE = r"([\d.]+)\s*([KMGT]?)i?B?"
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
# "the total memory required for HLO temporaries (34.68G) exceeds available HBM (15.75G)"
_TEMPORARIES = re.compile(r"required for HLO temporaries \(" + _SIZE + r"\) exceeds available HBM")
# "Used 40.5G of 15.75G hbm"
_USED = re.compile(r"Used\s+" + _SIZE + r"\s+of\s+" + _SIZE + r"\s+hbm", re.IGNORECASE)


def _refusal_bytes(text: str, argument_bytes: int) -> Optional[int]:
    """What the compiler says the program needs, from its out-of-memory message, if it says."""
    match = _USED.search(text)
    if match:
        return _to_bytes(match.group(1), match.group(2))
    match = _TEMPORARIES.search(text)
    if match:  # the figure covers temporaries only; the resident state comes on top
        return _to_bytes(match.group(1), match.group(2)) + argument_bytes
    return None


def _to_bytes(number: str, unit: str) -> int:
    return int(float(number) * _UNITS[unit.upper()])


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "out of memory"
