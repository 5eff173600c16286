"""One program a stage runs on its mesh, as the planner lowers and measures it, and the abstract inputs it
is lowered with. The stages' program lists (``programs``, ``rlvr_programs``, ``sampling_programs``) build
these; ``compile`` measures them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import jax
import numpy as np


@dataclass(frozen=True)
class Program:
    """One jitted program of a stage, and the work one call of it does."""

    name: str
    function: Any  # a MeshFunction (``.jitted``, ``.mesh``) or a plain jitted function with ``mesh`` below
    inputs: tuple  # sharded ShapeDtypeStructs to lower it with
    tokens: int  # token positions one call processes
    model_flops: float  # the MFU numerator for one call: 6·N·T + attention (training) or 2·N·T (forward)
    executed_flops: float  # what the chips run per call by the formula (remat adds a forward)
    calls_per_step: float = 1.0  # 0: runs outside the training steps (the DPO reference pass)
    resident: Any = ()  # abstract arrays that stay on the chips while it runs, not among its arguments
    loops: bool = True  # XLA's cost analysis counts loop bodies once: its FLOP count is then partial
    decode: Optional[dict] = None  # a sampler: {"rows", "prompt", "new"}; its longest loop is the decode loop
    mesh: Any = None
    # Trip counts for data-dependent loops by nesting depth (hlo_module): the sampler's decode loop and the
    # cached attention's block loop inside it.
    unknown_trip_counts: tuple[float, ...] = ()
    role: str = "train"  # the logical-axis rules it is traced under (``sharding.axis_rules``)

    def lower(self):
        from tulu_jax import sharding

        function = getattr(self.function, "jitted", self.function)
        mesh = self.mesh if self.mesh is not None else self.function.mesh
        with sharding.activate(mesh, self.role):
            return function.lower(*self.inputs)


def abstract(tree: Any, shardings: Any) -> Any:
    """``ShapeDtypeStruct`` leaves with their shardings (shapes from ``tree``, shardings from ``shardings``)."""
    return jax.tree.map(lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding),
                        tree, shardings)


def per_chip_bytes(abstract_tree) -> int:
    """Bytes one chip holds for these sharded abstract arrays (the largest shard of each leaf)."""
    total = 0
    for leaf in jax.tree.leaves(abstract_tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if getattr(leaf, "sharding", None) is not None else leaf.shape
        total += int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
    return total
