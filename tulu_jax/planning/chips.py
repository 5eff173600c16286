"""TPU chip specs and topology names: ``v5p-64`` or ``v5p:4x4x2`` → chip kind, chip count, slice shape.

Cloud accelerator names count TensorCores for v4 and v5p (two per chip, ``v5p-64`` is 32 chips) and
chips for v5e and v6e (``v6e-64`` is 64 chips). Peak figures are dense bf16 matmul throughput per chip.

Sources (Cloud TPU documentation, cloud.google.com/tpu/docs/<family> and .../system-architecture-tpu-vm):
- v4: 32 GiB HBM at 1,200 GB/s, 275 TFLOP/s; a TPU VM holds 4 chips and 407 GB of RAM (240 vCPUs).
- v5e: 16 GiB HBM at 819 GB/s, 197 TFLOP/s; 512 GiB DRAM per 8-chip host, multi-host slices run one
  4-chip VM per half host (ct5lp-hightpu-4t: 192 GB).
- v5p: 95 GiB HBM at 2,765 GB/s, 459 TFLOP/s; a VM holds 4 chips and 448 GB of RAM (208 vCPUs; half of
  each per NUMA node).
- v6e: 32 GiB HBM at 1,640 GB/s, 918 TFLOP/s; 1,536 GiB DRAM per 8-chip host, multi-host slices run one
  4-chip VM per half host (ct6e-standard-4t: 720 GB).

Interconnect (ICI): ``ici_link_bandwidth`` is one link's bandwidth in one direction; a chip has two links per
torus dimension (one each way: 6 on the 3-D chips, 4 on the 2-D ones).
- v5p: 1,200 GB/s bidirectional per chip over 6 links (cloud.google.com/tpu/docs/v5p): 100 GB/s per link
  per direction, the 90-100 GB/s issue 27 used.
- v5e: 400 GB/s bidirectional per chip over 4 links (cloud.google.com/tpu/docs/v5e): 50 GB/s.
- v6e: twice v5e's ICI (cloud.google.com/tpu/docs/v6e: 3,200 vs 1,600 Gbps, 4 ports per chip): 100 GB/s.
- v4: 6 links of 50 GB/s per direction (the v4 paper, Jouppi et al. 2023, arXiv 2304.01433; the scaling book's
  4.5e10 B/s one-way). Not used by any shipped config.
How the planner spends it (``ici_seconds``): a collective over a group that spans k torus dimensions runs a
bidirectional ring along each, so it has 2·k links per chip; its bytes per chip (``hlo_collectives``) move at
2·k·link bandwidth. That is optimistic (no hop latency, no contention between collectives that overlap), so
ICI time is a lower bound like the others.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tulu_jax.errors import MeshError

GIB = 1024**3
GB = 1000**3


@dataclass(frozen=True)
class ChipSpec:
    name: str  # accelerator family as written in accelerator types: v4, v5e, v5p, v6e
    libtpu_name: str  # the family as libtpu's topology names spell it
    hbm_bytes: int  # high-bandwidth memory per chip
    peak_bf16_flops: float  # dense bf16 FLOP/s per chip
    cores_per_name_unit: int  # TensorCores per chip counted by the accelerator type name (v5p-8 = 4 chips)
    dimensions: int  # 3 for the 3-D torus chips, 2 for the 2-D ones
    hbm_bandwidth: float  # bytes/s per chip
    chips_per_vm: int  # chips one TPU VM (one process) drives in a multi-host slice
    host_ram_bytes: int  # RAM of that VM
    ici_link_bandwidth: float  # bytes/s of one ICI link in one direction (module docstring)

    def ici_seconds(self, bytes_per_chip: float, torus_dims: int) -> float:
        """Time for a collective moving ``bytes_per_chip`` over a group spanning ``torus_dims`` torus dimensions."""
        return bytes_per_chip / (2 * max(torus_dims, 1) * self.ici_link_bandwidth)


CHIPS: dict[str, ChipSpec] = {
    "v4": ChipSpec("v4", "v4", 32 * GIB, 275e12, 2, 3, 1200e9, 4, 407 * GB, 50e9),
    "v5e": ChipSpec("v5e", "v5e", 16 * GIB, 197e12, 1, 2, 819e9, 4, 192 * GB, 50e9),
    "v5p": ChipSpec("v5p", "v5p", 95 * GIB, 459e12, 2, 3, 2765e9, 4, 448 * GB, 100e9),
    "v6e": ChipSpec("v6e", "v6e", 32 * GIB, 918e12, 1, 2, 1640e9, 4, 720 * GB, 100e9),
}
# The largest slice of each family (chips in one pod: v4 4,096, v5p 8,960, v5e and v6e 256; Cloud TPU docs).
# A grid beyond it is refused here: libtpu aborts the process on it (status 134 after 46 s for v5p:1000x1000x1000).
MAX_CHIPS = {"v4": 4096, "v5p": 8960, "v5e": 256, "v6e": 256}
# Other spellings users meet in the Cloud console.
ALIASES = {"v5litepod": "v5e", "v6litepod": "v6e", "trillium": "v6e"}

# Standard slice shapes by chip count (the shapes `gcloud` creates for an accelerator type).
_SHAPES_3D = {
    4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
    256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16), 4096: (16, 16, 16),
    8192: (16, 16, 32),
}
_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}


@dataclass(frozen=True)
class Topology:
    """One TPU slice: its chip kind and the chip grid (``shape``)."""

    chip: ChipSpec
    shape: tuple[int, ...]
    requested: str  # what the user typed, for messages

    @property
    def num_chips(self) -> int:
        return math.prod(self.shape)

    @property
    def libtpu_name(self) -> str:
        """The name ``jax.experimental.topologies.get_topology_desc`` understands, e.g. ``v5p:2x2x2``."""
        return f"{self.chip.libtpu_name}:{'x'.join(map(str, self.shape))}"

    @property
    def accelerator_type(self) -> str:
        """The Cloud accelerator type of this slice, e.g. ``v5p-16`` for 8 v5p chips."""
        return f"{self.chip.name}-{self.num_chips * self.chip.cores_per_name_unit}"

    @property
    def num_hosts(self) -> int:
        """TPU VMs (processes) of the slice: one per ``chips_per_vm`` chips, at least one."""
        return max(1, -(-self.num_chips // self.chip.chips_per_vm))


def _known_names() -> str:
    return ", ".join(f"{name}-N" for name in CHIPS) + " (or family:AxBxC such as v5p:2x2x2)"


def parse_topology(text: str) -> Topology:
    """Read ``v5p-64`` / ``v6e-16`` / ``v5litepod-8`` / ``v4:2x2x4``; raise MeshError naming the valid forms."""
    cleaned = text.strip().lower()
    match = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+)|:(\d+(?:x\d+){1,2}))", cleaned)
    if not match:
        raise MeshError(f"unknown TPU topology {text!r}; use one of {_known_names()}")
    family = ALIASES.get(match.group(1), match.group(1))
    if family not in CHIPS:
        raise MeshError(f"unknown TPU family {match.group(1)!r} in {text!r}; known families: {', '.join(CHIPS)}")
    chip = CHIPS[family]
    if match.group(3):
        shape = tuple(int(size) for size in match.group(3).split("x"))
        if len(shape) != chip.dimensions or min(shape) < 1:
            raise MeshError(
                f"topology {text!r}: {family} slices are {chip.dimensions}-D chip grids "
                f"(e.g. {family}:{'x'.join(['2'] * chip.dimensions)})"
            )
        if math.prod(shape) > MAX_CHIPS[family]:
            raise MeshError(
                f"topology {text!r} has {math.prod(shape):,} chips; a {family} slice has at most "
                f"{MAX_CHIPS[family]:,} (one pod)"
            )
        return Topology(chip, shape, text)
    count = int(match.group(2))
    if count % chip.cores_per_name_unit:
        raise MeshError(f"topology {text!r}: {family}-N counts TensorCores, N must be a multiple of {chip.cores_per_name_unit}")
    chips = count // chip.cores_per_name_unit
    shapes = _SHAPES_3D if chip.dimensions == 3 else _SHAPES_2D
    if chips not in shapes:
        valid = ", ".join(f"{family}-{n * chip.cores_per_name_unit}" for n in sorted(shapes))
        raise MeshError(f"topology {text!r} is not a standard {family} slice; choose one of {valid}")
    return Topology(chip, shapes[chips], text)
