"""What one call of a compiled program moves per chip, read from its optimized HLO: HBM bytes, ICI bytes and
the ICI time at the slice's link bandwidth, in total and for its longest top-level loop (the sampler's decode
loop: those figures divided by its trips are one decode step's).

The readers are ``hlo_module`` (computations and loop trip counts), ``hlo_collectives`` (ring bytes per
collective) and ``hlo_traffic`` (HBM bytes per op). This module adds the slice: which torus dimensions each
collective's group spans, from the compile-only devices' coordinates, and so how many links carry it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from tulu_jax.planning.chips import ChipSpec
from tulu_jax.planning.hlo_collectives import CollectiveSummary, mesh_axes_of, read_collectives, summarize
from tulu_jax.planning.hlo_module import HloModule
from tulu_jax.planning.hlo_traffic import instruction_bytes


@dataclass(frozen=True)
class LoopCost:
    """Per-chip traffic of one top-level loop, all trips together."""

    name: str
    trips: float
    trips_known: bool  # False: a caller's bound (data-dependent exit)
    hbm_bytes: float
    ici_bytes: float
    ici_seconds: float
    fsdp_gathers: int  # all-gathers over the fsdp axis in the loop: weights gathered again on every trip
    fsdp_gather_bytes: float  # their ICI bytes per chip, all trips


@dataclass(frozen=True)
class HloCost:
    hbm_bytes: float  # per chip per call, loops' trips included
    ici_bytes: float  # per chip per call, sent (= received) over the interconnect
    ici_seconds: float  # at the slice's link bandwidth over the torus dimensions each group spans
    collectives: tuple[CollectiveSummary, ...]
    longest_loop: Optional[LoopCost]  # the top-level loop with the most trips, if any


def torus_dims_spanned(group: Sequence[int], devices: Sequence) -> int:
    """How many torus dimensions a group of partition ids spans (partition i runs on ``devices[i]``)."""
    coordinates = [tuple(getattr(devices[i], "coords", (i,))) for i in group if i < len(devices)]
    if len(coordinates) < 2:
        return 0
    return sum(1 for axis in range(len(coordinates[0])) if len({c[axis] for c in coordinates}) > 1)


def read_hlo_cost(hlo_text: str, mesh, chip: ChipSpec, unknown_trip_counts: tuple[float, ...] = ()) -> HloCost:
    """The program's HBM and ICI traffic per chip per call (module docstring)."""
    module = HloModule.parse(hlo_text, unknown_trip_counts)
    devices = list(mesh.devices.flat)
    mesh_shape, axis_names = tuple(mesh.devices.shape), tuple(mesh.axis_names)
    collectives = read_collectives(module, len(devices))
    dims_of = {}
    loop_ici = {}
    ici_seconds = 0.0
    for collective in collectives:
        key = collective.groups[0] if collective.groups else ()
        if key not in dims_of:
            dims_of[key] = torus_dims_spanned(key, devices)
        seconds = chip.ici_seconds(collective.total_bytes_per_chip, dims_of[key])
        ici_seconds += seconds
        outer = module.outermost.get(collective.computation, "")
        bytes_, time_ = loop_ici.get(outer, (0.0, 0.0))
        loop_ici[outer] = (bytes_ + collective.total_bytes_per_chip, time_ + seconds)

    loop_hbm: dict[str, float] = {}
    for computation, runs in module.walked():
        moved = sum(instruction_bytes(module, computation, instruction) for instruction in computation.instructions)
        outer = module.outermost.get(computation.name, "")
        loop_hbm[outer] = loop_hbm.get(outer, 0.0) + moved * runs

    top_loops = [module.top_level_loop(name) for name in set(loop_hbm) | set(loop_ici) if name]
    longest = max((loop for loop in top_loops if loop is not None), key=lambda loop: loop.trip_count, default=None)
    longest_cost = None
    if longest is not None:
        ici_bytes, ici_time = loop_ici.get(longest.instruction, (0.0, 0.0))
        gathers = [c for c in collectives if c.op == "all-gather" and c.groups
                   and module.outermost.get(c.computation) == longest.instruction
                   and "fsdp" in mesh_axes_of(c.groups[0], mesh_shape, axis_names)]
        longest_cost = LoopCost(longest.instruction, longest.trip_count, longest.known,
                                loop_hbm.get(longest.instruction, 0.0), ici_bytes, ici_time,
                                len(gathers), sum(c.total_bytes_per_chip for c in gathers))
    return HloCost(
        hbm_bytes=sum(loop_hbm.values()),
        ici_bytes=sum(c.total_bytes_per_chip for c in collectives),
        ici_seconds=ici_seconds,
        collectives=tuple(summarize(collectives, mesh_shape, axis_names)),
        longest_loop=longest_cost,
    )
