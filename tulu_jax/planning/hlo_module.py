"""Read the optimized HLO text of a compiled program: its computations, their instructions with result shapes,
and how many times each computation runs per call of the program (loop trip counts multiplied down).

Only what the planner's ICI and HBM readers need is parsed: one line per instruction,
``%name = SHAPE opcode(%operand, ...), attribute=..., calls=%c, body=%b, backend_config={...}``.

Trip counts of ``while`` loops:
- ``known_trip_count`` in the loop's backend_config when XLA wrote it;
- else the loop condition's ``compare(get-tuple-element(param, index=k), constant(C)), direction=LT`` (the
  form ``fori_loop``, ``scan`` and the sampler's ``step < max_new_tokens`` lower to), minus the loop
  variable's initial value when that is a constant. A data-dependent exit ANDed to it (the sampler stops when
  every row has stopped) makes C an upper bound, which is what a plan wants;
- else the caller's bound for a data-dependent loop at that nesting depth (``unknown_trip_counts[depth]``,
  depth 0 being a loop in no other loop; the last entry serves deeper loops; 1 when none is given), recorded
  as unknown. The sampler's decode loop is bounded by ``max_new_tokens`` in its condition; the cached
  attention's block loop inside it reads as many blocks as are filled, which only the caller knows.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

DTYPE_BYTES = {
    "pred": 1, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "s32": 4, "u32": 4, "s64": 8, "u64": 8,
    "f16": 2, "bf16": 2, "f32": 4, "f64": 8, "c64": 8, "c128": 16,
    "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3b11fnuz": 1, "f8e4m3fnuz": 1, "f8e5m2fnuz": 1,
}
# One array shape with its optional layout: bf16[2,512]{1,0:T(2,128)(2,1)S(1)}
ARRAY = re.compile(r"\b(" + "|".join(sorted(DTYPE_BYTES, key=len, reverse=True)) + r")\[([^\]]*)\](\{[^}]*\})?")
_COMPUTATION = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\)\s*->\s*.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_OPCODE = re.compile(r"\s([a-z][a-z0-9\-]*)\((.*)$")
_MEMORY_SPACE = re.compile(r"S\((\d+)\)")
_COMMENT = re.compile(r"/\*.*?\*/")
_TRIP_COUNT = re.compile(r'"known_trip_count":\{"n":"(\d+)"')


@dataclass(frozen=True)
class Array:
    dtype: str
    dims: tuple[int, ...]
    memory_space: int = 0  # 0 is HBM on TPU; S(1) is VMEM, others are on-chip scratch

    @property
    def bytes(self) -> int:
        return int(math.prod(self.dims) * DTYPE_BYTES[self.dtype])


@dataclass
class Instruction:
    name: str
    opcode: str
    shape: tuple[Array, ...]  # the result: one array, or a tuple's arrays in order
    operands: tuple[str, ...]
    text: str  # the whole line, for attributes
    is_root: bool = False

    @property
    def bytes(self) -> int:
        return sum(array.bytes for array in self.shape)

    def attribute(self, key: str) -> Optional[str]:
        """The raw value of ``key=...`` up to the next top-level comma (braces and brackets kept whole)."""
        start = self.text.find(f", {key}=")
        if start < 0:
            return None
        start += len(key) + 3
        depth = 0
        for index in range(start, len(self.text)):
            char = self.text[index]
            if char in "{[(":
                depth += 1
            elif char in "}])":
                depth -= 1
            elif char == "," and depth == 0:
                return self.text[start:index]
        return self.text[start:]

    def called(self, key: str) -> Optional[str]:
        value = self.attribute(key)
        return value.lstrip("%").strip() if value else None


@dataclass
class Computation:
    name: str
    instructions: list[Instruction] = field(default_factory=list)
    is_entry: bool = False

    def __post_init__(self):
        self.by_name: dict[str, Instruction] = {}

    def add(self, instruction: Instruction) -> None:
        self.instructions.append(instruction)
        self.by_name[instruction.name] = instruction

    @property
    def root(self) -> Instruction:
        return next((i for i in self.instructions if i.is_root), self.instructions[-1])


@dataclass(frozen=True)
class Loop:
    """One ``while`` loop: the computation it runs in, its body, and its trip count per entry."""

    instruction: str
    body: str
    trip_count: float
    known: bool  # False when the caller's bound stood in


def parse_arrays(text: str) -> tuple[Array, ...]:
    arrays = []
    for match in ARRAY.finditer(text):
        dims = tuple(int(d.lstrip("<=")) for d in match.group(2).split(",") if d.strip())
        space = _MEMORY_SPACE.search(match.group(3) or "")
        arrays.append(Array(match.group(1), dims, int(space.group(1)) if space else 0))
    return tuple(arrays)


def _split_operands(text: str) -> tuple[tuple[str, ...], str]:
    """The operand names of ``a, b, c), rest`` and the text after the closing parenthesis."""
    depth, names, current = 0, [], []
    for index, char in enumerate(text):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                names.append("".join(current))
                rest = text[index + 1:]
                found = tuple(name.strip().split()[-1].lstrip("%") for name in names if name.strip())
                return found, rest
            depth -= 1
        elif char == "," and depth == 0:
            names.append("".join(current))
            current = []
            continue
        current.append(char)
    return tuple(), text


def _parse_instruction(line: str) -> Optional[Instruction]:
    match = _INSTRUCTION.match(line)
    if not match:
        return None
    is_root, name, rest = bool(match.group(1)), match.group(2), match.group(3)
    opcode_match = _OPCODE.search(rest)
    if not opcode_match:
        return None
    shape_text = rest[:opcode_match.start() + 1]
    operands, _ = _split_operands(opcode_match.group(2))
    return Instruction(name, opcode_match.group(1), parse_arrays(shape_text), operands, line, is_root)


@dataclass
class HloModule:
    computations: dict[str, Computation]
    entry: str
    unknown_trip_counts: tuple[float, ...] = ()
    loops: list[Loop] = field(default_factory=list)
    multiplicity: dict[str, float] = field(default_factory=dict)  # computation -> runs per program call
    outermost: dict[str, str] = field(default_factory=dict)  # computation -> the top-level loop it runs in ("": none)

    @classmethod
    def parse(cls, text: str, unknown_trip_counts: tuple[float, ...] = ()) -> "HloModule":
        computations, entry, current = {}, "", None
        for line in text.splitlines():
            header = _COMPUTATION.match(line)
            if header:
                current = Computation(header.group(2), is_entry=bool(header.group(1)))
                computations[current.name] = current
                if current.is_entry:
                    entry = current.name
                continue
            if current is None or line.strip() in ("", "}"):
                continue
            instruction = _parse_instruction(_COMMENT.sub("", line))
            if instruction is not None:
                current.add(instruction)
        module = cls(computations, entry, tuple(unknown_trip_counts))
        module._count_runs()
        return module

    # --- how often each computation runs ----------------------------------------------------------------
    def _count_runs(self) -> None:
        """Walk from ENTRY through while bodies and conditions, calls, conditionals and async wrappers,
        multiplying loop trip counts; fusion bodies are not walked (a fusion is one op of its caller)."""
        pending = [(self.entry, 1.0, 0, "")]
        while pending:
            name, runs, depth, outer = pending.pop()
            if name not in self.computations:
                continue
            self.multiplicity[name] = self.multiplicity.get(name, 0.0) + runs
            self.outermost.setdefault(name, outer)
            for instruction in self.computations[name].instructions:
                if instruction.opcode == "while":
                    trips, known = self._trip_count(name, instruction, depth)
                    body, condition = instruction.called("body"), instruction.called("condition")
                    self.loops.append(Loop(instruction.name, body, trips, known))
                    inside = outer or instruction.name
                    pending += [(body, runs * trips, depth + 1, inside), (condition, runs * (trips + 1), depth + 1, inside)]
                elif instruction.opcode in ("call", "async-start", "custom-call"):
                    target = instruction.called("to_apply") or instruction.called("calls")
                    if target and instruction.opcode != "custom-call":
                        pending.append((target, runs, depth, outer))
                elif instruction.opcode == "conditional":
                    branches = instruction.attribute("branch_computations") or ""
                    for branch in re.findall(r"%?([\w.\-]+)", branches.strip("{}")):
                        pending.append((branch, runs, depth, outer))  # an upper bound: every branch counted

    def _trip_count(self, computation: str, loop: Instruction, depth: int) -> tuple[float, bool]:
        known = _TRIP_COUNT.search(loop.text)
        if known:
            return int(known.group(1)), True
        condition = self.computations.get(loop.called("condition") or "")
        if condition is not None:
            bound = _compare_bound(condition)
            if bound is not None:
                index, limit = bound
                start = self._initial_value(self.computations[computation], loop, index)
                return max(limit - start, 0), True
        bounds = self.unknown_trip_counts
        return (bounds[min(depth, len(bounds) - 1)] if bounds else 1.0), False

    def _initial_value(self, computation: Computation, loop: Instruction, index: int) -> int:
        """The loop variable's starting constant (0 when it cannot be read)."""
        init = computation.by_name.get(loop.operands[0]) if loop.operands else None
        if init is None or init.opcode != "tuple" or index >= len(init.operands):
            return 0
        value = _constant_value(computation, init.operands[index])
        return value if value is not None else 0

    def top_level_loop(self, name: str) -> Optional[Loop]:
        """The loop named ``name`` if it runs in no other loop (the sampler's decode loop, a layer scan)."""
        return next((loop for loop in self.loops if loop.instruction == name), None)

    def loop_of(self, computation: str) -> Optional[Loop]:
        return next((loop for loop in self.loops if loop.body == computation), None)

    def walked(self):
        """(computation, runs per call) for every computation that runs as ops of its own (not fusion bodies)."""
        return [(self.computations[name], runs) for name, runs in self.multiplicity.items()]


def _constant_value(computation: Computation, name: str, depth: int = 0) -> Optional[int]:
    instruction = computation.by_name.get(name)
    if instruction is None or depth > 4:
        return None
    if instruction.opcode == "constant":
        match = re.search(r"constant\((-?\d+)\)", instruction.text)
        return int(match.group(1)) if match else None
    if instruction.opcode in ("copy", "bitcast", "convert") and instruction.operands:
        return _constant_value(computation, instruction.operands[0], depth + 1)
    return None


def _compare_bound(condition: Computation) -> Optional[tuple[int, int]]:
    """(tuple index, limit) when a loop condition is ``counter < constant`` (its root: a ``<`` elsewhere in a
    condition, such as the continuous sampler's ``rows admitted < rows``, bounds nothing)."""
    for instruction in condition.instructions:
        if not instruction.is_root or instruction.opcode != "compare" or "direction=LT" not in instruction.text \
                or len(instruction.operands) != 2:
            continue
        counter = condition.by_name.get(instruction.operands[0])
        limit = _constant_value(condition, instruction.operands[1])
        if counter is not None and counter.opcode == "get-tuple-element" and limit is not None:
            index = re.search(r"index=(\d+)", counter.text)
            if index:
                return int(index.group(1)), limit
    return None
