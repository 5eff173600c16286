"""A program's time per call from three per-chip terms, each at its peak rate (``planning/chips.py``):

- compute: executed FLOPs at the bf16 matmul peak;
- HBM: bytes read and written in HBM (``hlo_traffic``) at HBM bandwidth;
- ICI: bytes sent over the interconnect (``hlo_collectives``) at the links the groups span (``chips.ici_seconds``).

The **lower bound** is the largest term: the three overlap perfectly. The **serial upper bound** is their sum:
nothing overlaps. Both assume each unit runs at its peak, so a measured step can still be slower than the
upper bound (kernel efficiency, latency of small collectives, host work); the estimate is a model, not a
measurement. MFU is model FLOPs (6·N·T + attention, no recomputation) over the slice's peak in each time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from tulu_jax.planning.chips import ChipSpec


@dataclass(frozen=True)
class ProgramTime:
    compute_seconds: float
    hbm_seconds: Optional[float]  # None when the program was not compiled (out of memory)
    ici_seconds: Optional[float]

    @property
    def terms(self) -> dict[str, float]:
        terms = {"compute": self.compute_seconds, "HBM": self.hbm_seconds, "ICI": self.ici_seconds}
        return {name: seconds for name, seconds in terms.items() if seconds is not None}

    @property
    def lower(self) -> float:
        return max(self.terms.values())

    @property
    def upper(self) -> float:
        return sum(self.terms.values())

    @property
    def bound_by(self) -> str:
        """The term that sets the lower bound."""
        terms = self.terms
        return max(terms, key=terms.get)

    def scaled(self, factor: float) -> "ProgramTime":
        return ProgramTime(self.compute_seconds * factor,
                           None if self.hbm_seconds is None else self.hbm_seconds * factor,
                           None if self.ici_seconds is None else self.ici_seconds * factor)


def program_time(chip: ChipSpec, num_chips: int, executed_flops: float, hlo) -> ProgramTime:
    """``executed_flops`` over the whole slice; ``hlo`` an ``HloCost`` (per chip) or None."""
    compute = executed_flops / (chip.peak_bf16_flops * num_chips)
    if hlo is None:
        return ProgramTime(compute, None, None)
    return ProgramTime(compute, hlo.hbm_bytes / chip.hbm_bandwidth, hlo.ici_seconds)
