"""The collectives of a compiled program, read from its optimized HLO: op, replica-group size, bytes each chip
moves over the interconnect (ICI), the mesh axes the group spans, and the loop it runs in.

Bytes per chip, for a group of ``n`` chips, with ``S`` the full (unsharded over the group) array and ``s = S/n``
one chip's share. These are the ring (bandwidth-optimal) algorithms' figures; each byte a chip sends it also
receives, so this is the traffic on a chip's links in each direction:
- all-gather:          receives every other chip's share:        (n-1)·s = (n-1)/n·S   (S: the gathered output)
- reduce-scatter:      sends every other chip's partial share:   (n-1)·s = (n-1)/n·S   (S: the input)
- all-reduce:          a reduce-scatter then an all-gather:      2·(n-1)/n·S           (S: the operand)
- all-to-all:          keeps its own 1/n, sends the rest:        (n-1)/n·S             (S: the operand)
- collective-permute:  sends the whole buffer to one peer:       S                     (S: the operand)

Async pairs (``all-gather-start`` / ``-done``) are counted once, at the start. A collective in a ``while`` body
counts once per trip (``HloModule`` multiplies the trip counts down).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence

from tulu_jax.planning.hlo_module import HloModule, Instruction

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_MESH_GROUPS = re.compile(r"mesh\[([^\]]*)\]\s*\{([^}]*)\}")
_IOTA_GROUPS = re.compile(r"\[([\d,]+)\]<=\[([\d,]+)\](?:T\(([\d,]+)\))?")


@dataclass(frozen=True)
class Collective:
    op: str  # one of COLLECTIVES
    name: str  # the HLO instruction
    computation: str
    group_size: int
    groups: tuple[tuple[int, ...], ...]  # partition ids of each group (empty when not read)
    array_bytes: int  # S in the module docstring
    bytes_per_chip: float  # one call of this op
    runs: float  # times it runs per program call (the product of the trip counts of the loops around it)
    in_loop: bool  # inside a while body
    trip_count: Optional[float]  # the innermost loop's trip count when in a loop

    @property
    def total_bytes_per_chip(self) -> float:
        return self.bytes_per_chip * self.runs


def ring_bytes(op: str, array_bytes: float, group_size: int) -> float:
    """Bytes one chip sends (and receives) for ``op`` over a group of ``group_size`` (module docstring)."""
    n = group_size
    if n <= 1:
        return 0.0
    if op == "all-reduce":
        return 2.0 * (n - 1) / n * array_bytes
    if op == "collective-permute":
        return float(array_bytes)
    return (n - 1) / n * array_bytes


def _base_op(opcode: str) -> Optional[str]:
    for op in COLLECTIVES:
        if opcode in (op, f"{op}-start"):
            return op
    return None


def replica_groups(instruction: Instruction, partitions: int) -> tuple[tuple[int, ...], ...]:
    """The groups of partition ids, from any of XLA's three spellings (explicit lists, iota, mesh axes)."""
    if instruction.opcode.startswith("collective-permute"):
        pairs = re.findall(r"\{(\d+),(\d+)\}", instruction.attribute("source_target_pairs") or "")
        return tuple((int(a), int(b)) for a, b in pairs)
    text = instruction.attribute("replica_groups")
    if text is None:
        return (tuple(range(partitions)),)
    mesh = _MESH_GROUPS.search(text)
    if mesh:
        return _mesh_groups(mesh.group(1), mesh.group(2))
    iota = _IOTA_GROUPS.search(text)
    if iota:
        return _iota_groups(iota)
    groups = tuple(tuple(int(i) for i in group.split(",") if i.strip()) for group in re.findall(r"\{([\d,\s]*)\}", text))
    groups = tuple(group for group in groups if group)
    return groups or (tuple(range(partitions)),)


def _iota_groups(match) -> tuple[tuple[int, ...], ...]:
    import numpy as np

    shape = [int(d) for d in match.group(1).split(",")]
    reshape = [int(d) for d in match.group(2).split(",")]
    ids = np.arange(math.prod(reshape)).reshape(reshape)
    if match.group(3):
        ids = ids.transpose([int(d) for d in match.group(3).split(",")])
    return tuple(tuple(int(i) for i in row) for row in ids.reshape(shape))


def _mesh_groups(axes_text: str, grouped_text: str) -> tuple[tuple[int, ...], ...]:
    """``mesh['axis_0'=4,'axis_1'=2] {'axis_1'}``: one group per index of the other axes, row-major ids."""
    import numpy as np

    axes = [(name, int(size)) for name, size in re.findall(r"'?([\w]+)'?=(\d+)", axes_text)]
    grouped = set(re.findall(r"'?([\w]+)'?", grouped_text))
    ids = np.arange(math.prod(size for _, size in axes)).reshape([size for _, size in axes])
    inner = [i for i, (name, _) in enumerate(axes) if name in grouped]
    outer = [i for i in range(len(axes)) if i not in inner]
    ids = ids.transpose(outer + inner).reshape(-1, math.prod(axes[i][1] for i in inner) if inner else 1)
    return tuple(tuple(int(i) for i in row) for row in ids)


def _array_bytes(op: str, instruction: Instruction, computation) -> int:
    """S of the module docstring: the gathered output (all-gather) or the operand (the others)."""
    if op == "all-gather":
        outputs = [a for a in instruction.shape if a.dtype not in ("u32", "s32") or len(instruction.shape) == 1]
        return max(a.bytes for a in outputs) if outputs else instruction.bytes
    operand = computation.by_name.get(instruction.operands[0]) if instruction.operands else None
    if operand is not None and operand.shape:
        return operand.bytes
    return instruction.shape[0].bytes if instruction.shape else 0


def read_collectives(module: HloModule, partitions: int) -> list[Collective]:
    """Every collective of the program with its ICI bytes per chip per call and how often it runs."""
    found = []
    for computation, runs in module.walked():
        loop = module.loop_of(computation.name)
        for instruction in computation.instructions:
            op = _base_op(instruction.opcode)
            if op is None:
                continue
            groups = replica_groups(instruction, partitions)
            size = 2 if op == "collective-permute" else max((len(g) for g in groups), default=1)
            array = _array_bytes(op, instruction, computation)
            if op == "collective-permute":
                per_chip = float(array) if groups else 0.0
            else:
                per_chip = ring_bytes(op, array, size)
            found.append(Collective(op, instruction.name, computation.name, size, groups, array, per_chip, runs,
                                    runs > 1 or loop is not None, loop.trip_count if loop else None))
    return found


@dataclass(frozen=True)
class CollectiveSummary:
    """One line of a program's interconnect traffic: an op over one set of mesh axes."""

    op: str
    axes: tuple[str, ...]
    group_size: int
    count: int  # instructions
    in_loop: bool
    bytes_per_chip: float  # per program call, loop trips included


def mesh_axes_of(group: Sequence[int], mesh_shape: Sequence[int], axis_names: Sequence[str]) -> tuple[str, ...]:
    """The mesh axes along which a group's partition ids vary (ids are row-major positions in the mesh)."""
    import numpy as np

    if len(group) < 2:
        return ()
    coords = np.array(np.unravel_index(np.asarray(group), tuple(mesh_shape))).T
    return tuple(name for axis, name in enumerate(axis_names) if len(set(coords[:, axis])) > 1)


def summarize(collectives: Sequence[Collective], mesh_shape, axis_names) -> list[CollectiveSummary]:
    table = defaultdict(lambda: [0, 0.0, 0])
    for collective in collectives:
        axes = mesh_axes_of(collective.groups[0], mesh_shape, axis_names) if collective.groups else ()
        key = (collective.op, axes, collective.in_loop)
        table[key][0] += 1
        table[key][1] += collective.total_bytes_per_chip
        table[key][2] = max(table[key][2], collective.group_size)
    return [CollectiveSummary(op, axes, size, count, in_loop, total)
            for (op, axes, in_loop), (count, total, size) in sorted(table.items(), key=lambda item: -item[1][1])]
