"""HBM bytes one chip reads and writes per call of a compiled program, read from its optimized HLO.

Each op that runs as an op of its own (a fusion, a dot, a copy, a collective; not the ops inside a fusion,
which stay in vector memory) reads its operands and writes its result once, counted where they live in HBM
(memory space 0; ``S(1)`` vector memory and the scalar spaces are on the chip). Three refinements keep loops
honest, as XLA's own cost analysis does:
- a slice (``dynamic-slice``, ``slice``, ``gather``) of an operand reads only the slice: a scanned layer reads
  its own weights, not the stacked array's;
- an in-place update (``dynamic-update-slice`` or ``scatter`` at a fusion's root) writes only the update: a
  decode step writes one token's keys and values, not the whole cache or page pool;
- an op in a ``while`` body counts once per trip (``HloModule`` multiplies the trip counts down).

What is not modelled: re-reads when a fused operand is larger than vector memory (a matmul's tiles), and
the compiler's prefetches into vector memory beyond counting their HBM side once. So it is an estimate that
leans low, fit for a lower bound: on a loop-free tiny SFT step (tests/tpu/test_plan.py's, v5p-16) it counts
128 MB per chip, 221 MB with vector-memory buffers included, where XLA's own cost analysis says 288 MB
(``bytes accessed``, which counts every memory space, and which the planner cannot use: it counts a loop body
once).
"""

from __future__ import annotations

from dataclasses import dataclass

from tulu_jax.planning.hlo_module import Array, Computation, HloModule, Instruction

# Ops that move no HBM bytes of their own (bookkeeping, or their callee's ops are counted instead).
NO_TRAFFIC = {
    "parameter", "constant", "get-tuple-element", "tuple", "bitcast", "while", "call", "conditional",
    "after-all", "partition-id", "replica-id", "iota", "copy-done", "all-gather-done", "all-reduce-done",
    "collective-permute-done", "reduce-scatter-done", "all-to-all-done", "async-done", "async-update",
    "opt-barrier", "add-dependency", "domain",
}
SLICING = {"dynamic-slice", "slice", "gather"}


# Updates written into their operand's buffer, and which operand holds the update: a decode step writes one
# token's keys and values into a KV cache (dynamic-update-slice) or into KV pages (scatter), not the buffer.
IN_PLACE = {"dynamic-update-slice": 1, "scatter": 2}


def _hbm_bytes(arrays) -> int:
    return sum(array.bytes for array in arrays if array.memory_space == 0)


@dataclass(frozen=True)
class Traffic:
    bytes_per_call: float  # per chip, loops' trips included
    in_loops: float  # the part in while bodies


def _fused_root(module: HloModule, instruction: Instruction) -> tuple[Computation | None, Instruction | None]:
    fused = module.computations.get(instruction.called("calls") or "")
    return (fused, fused.root) if fused is not None and fused.instructions else (None, None)


def instruction_bytes(module: HloModule, computation: Computation, instruction: Instruction) -> int:
    """HBM bytes one run of ``instruction`` reads and writes (module docstring)."""
    opcode = instruction.opcode
    if opcode in NO_TRAFFIC:
        return 0
    operands = [computation.by_name.get(name) for name in instruction.operands]
    operand_shapes: list[tuple[Array, ...]] = [op.shape if op is not None else () for op in operands]
    result: tuple[Array, ...] = instruction.shape
    if opcode == "copy-start":  # (destination, source alias, context): the source is the operand
        result = instruction.shape[:1]
    elif opcode.endswith("-start"):  # (operand alias, output, context...): the output is the second array
        result = instruction.shape[1:2] if len(instruction.shape) > 1 else instruction.shape
    if opcode in SLICING:
        return 2 * _hbm_bytes(result)
    if opcode in IN_PLACE:
        update = operand_shapes[IN_PLACE[opcode]] if len(operand_shapes) > IN_PLACE[opcode] else ()
        return 2 * _hbm_bytes(update)
    if opcode == "fusion":
        fused, root = _fused_root(module, instruction)
        if fused is not None:
            return _fusion_bytes(module, fused, root, operand_shapes, result)
    return sum(_hbm_bytes(shape) for shape in operand_shapes) + _hbm_bytes(result)


def _fusion_bytes(module: HloModule, fused: Computation, root: Instruction, operand_shapes, result) -> int:
    read = 0
    for number, shape in enumerate(operand_shapes):
        full = _hbm_bytes(shape)
        if full:
            read += min(full, _parameter_read(module, fused, number, full))
    roots = [fused.by_name[name] for name in root.operands] if root.opcode == "tuple" else [root]
    written = 0
    for index, produced in enumerate(roots):
        target = result[index:index + 1] if len(result) > index else ()
        if not _hbm_bytes(target):
            continue
        if produced.opcode in IN_PLACE and len(produced.operands) > IN_PLACE[produced.opcode]:
            update = fused.by_name.get(produced.operands[IN_PLACE[produced.opcode]])
            written += update.bytes if update is not None else 0
        else:
            written += _hbm_bytes(target)
    return read + written


def _parameter_read(module: HloModule, fused: Computation, number: int, full: int, depth: int = 0) -> int:
    """Bytes a fusion reads of its parameter ``number``: a slice's size where only slices read it, through
    nested fusions; nothing for the buffer an in-place update writes into; else all of it."""
    name = _param_name(fused, number)
    readers = [instruction for instruction in fused.instructions if name in instruction.operands]
    total = 0
    for reader in readers:
        if reader.opcode in SLICING and reader.operands[0] == name:
            total += reader.bytes
        elif reader.opcode in IN_PLACE and reader.operands[0] == name:
            continue  # updated in place: only the update is written (counted as the fusion's output)
        elif reader.opcode == "fusion" and depth < 4:
            nested = module.computations.get(reader.called("calls") or "")
            if nested is None:
                return full
            total += _parameter_read(module, nested, reader.operands.index(name), full, depth + 1)
        else:
            return full
    return total


def _param_name(fused: Computation, number: int) -> str:
    for instruction in fused.instructions:
        if instruction.opcode == "parameter" and f"parameter({number})" in instruction.text:
            return instruction.name
    return ""


def read_traffic(module: HloModule) -> Traffic:
    total = in_loops = 0.0
    for computation, runs in module.walked():
        looped = module.loop_of(computation.name) is not None or runs > 1
        for instruction in computation.instructions:
            moved = instruction_bytes(module, computation, instruction) * runs
            total += moved
            if looped:
                in_loops += moved
    return Traffic(total, in_loops)
