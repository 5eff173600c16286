"""The device mesh and the one table that maps logical axis names to mesh axes, per role.

Changing a parallelism strategy is an edit of ``LOGICAL_AXIS_RULES``, not of the model. Parameters,
optimizer state and activations all take their shardings from it. A dimension whose size the mesh axes do
not divide is replicated instead (say, 8 KV heads over a tensor axis of 16) and reported by ``describe``.

Two roles read the table. ``train`` is the table as written: weights split over fsdp (and tensor), the
batch over data×fsdp. ``sample`` is the layout a decoder wants, where every weight a decode matmul reads
is resident: on a sampling mesh (``sampling_mesh``: the same devices as groups of ``tensor`` chips), the
weights are split over tensor only and replicated across groups, and each group decodes its own rows
(``rollout_group`` over data×fsdp). ``SAMPLING_OVERRIDES`` is the whole difference between the two.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tulu_jax.errors import MeshError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or axes, or None for replicated)
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("layers", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
    ("act_embed", None),
    ("act_mlp", "tensor"),
)

# The sample role: what changes from the table above. No weight dim over fsdp, so a decode step never
# gathers one; rows are split by rollout group, and within a group a row is never split.
SAMPLING_OVERRIDES: tuple[tuple[str, Any], ...] = (
    ("embed", None),
    ("batch", None),
    ("rollout_group", ("data", "fsdp")),
)
ROLES = ("train", "sample")


def axis_rules(role: str = "train") -> tuple[tuple[str, Any], ...]:
    """The logical-axis rules of a role: ``train`` is ``LOGICAL_AXIS_RULES``; ``sample`` applies the overrides."""
    if role not in ROLES:
        raise ValueError(f"unknown sharding role {role!r}; roles: {ROLES}")
    if role == "train":
        return LOGICAL_AXIS_RULES
    overrides = dict(SAMPLING_OVERRIDES)
    rules = tuple((name, overrides.get(name, target)) for name, target in LOGICAL_AXIS_RULES)
    return rules + tuple((name, target) for name, target in SAMPLING_OVERRIDES if name not in dict(rules))


@dataclass(frozen=True)
class MeshConfig:
    """Sizes of the mesh axes; one of them may be -1 to take all remaining devices."""

    data: int = 1
    fsdp: int = -1
    tensor: int = 1

    def __post_init__(self) -> None:
        sizes = (self.data, self.fsdp, self.tensor)
        if sum(size == -1 for size in sizes) > 1:
            raise MeshError(f"mesh: at most one of data/fsdp/tensor may be -1, got {sizes}")
        if any(size == 0 or size < -1 for size in sizes):
            raise MeshError(f"mesh: sizes must be positive or -1, got data={self.data} fsdp={self.fsdp} tensor={self.tensor}")

    def resolve(self, device_count: int) -> tuple[int, int, int]:
        sizes = [self.data, self.fsdp, self.tensor]
        known = math.prod(size for size in sizes if size != -1)
        if -1 in sizes:
            if device_count % known:
                raise MeshError(
                    f"mesh: {device_count} devices cannot be split with data={self.data} fsdp={self.fsdp} "
                    f"tensor={self.tensor} ({known} does not divide {device_count})"
                )
            sizes[sizes.index(-1)] = device_count // known
        if math.prod(sizes) != device_count:
            raise MeshError(
                f"mesh: data×fsdp×tensor = {sizes[0]}×{sizes[1]}×{sizes[2]} = {math.prod(sizes)} but there are "
                f"{device_count} devices; make the product equal the device count or set one axis to -1"
            )
        return tuple(sizes)  # type: ignore[return-value]


def make_mesh(config: MeshConfig, devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    devices = list(jax.devices() if devices is None else devices)
    shape = config.resolve(len(devices))
    try:
        device_grid = jax.experimental.mesh_utils.create_device_mesh(shape, devices=devices)
    except Exception:  # noqa: BLE001 - topology-aware placement is a nicety; fall back to the plain order
        device_grid = np.asarray(devices).reshape(shape)
    return Mesh(device_grid, MESH_AXES)


def mesh_spec(logical: Sequence[Optional[str]], shape: Optional[Sequence[int]] = None, mesh: Optional[Mesh] = None,
              role: str = "train") -> PartitionSpec:
    """The mesh ``PartitionSpec`` for logical axis names; with ``shape`` and ``mesh``, undividable dims replicate."""
    rules = dict(axis_rules(role))
    used: set[str] = set()
    spec = []
    for index, name in enumerate(logical):
        target = rules.get(name) if name is not None else None
        axes = () if target is None else ((target,) if isinstance(target, str) else tuple(target))
        axes = tuple(axis for axis in axes if axis not in used)  # a mesh axis shards one dim at most
        if shape is not None and mesh is not None:
            axes = tuple(axis for axis in axes if mesh.shape[axis] > 1)
            if axes and shape[index] % math.prod(mesh.shape[axis] for axis in axes):
                axes = ()
        used.update(axes)
        spec.append(None if not axes else (axes[0] if len(axes) == 1 else axes))
    return PartitionSpec(*spec)


def tree_shardings(mesh: Mesh, logical_axes: Any, shapes: Any, role: str = "train") -> Any:
    """``NamedSharding``s for a pytree, from its logical ``PartitionSpec`` leaves and its shapes."""
    return jax.tree.map(
        lambda logical, shaped: NamedSharding(mesh, mesh_spec(tuple(logical), shaped.shape, mesh, role)),
        logical_axes,
        shapes,
        is_leaf=lambda leaf: isinstance(leaf, PartitionSpec),
    )


def batch_sharding(mesh: Mesh, rank: int = 2) -> NamedSharding:
    """Rows split as the table's ``batch`` rule says (data × fsdp), the other ``rank - 1`` dims replicated."""
    return NamedSharding(mesh, mesh_spec(("batch",) + (None,) * (rank - 1)))


def batch_axes() -> tuple[str, ...]:
    """The mesh axes rows are split over in training: the table's ``batch`` rule."""
    target = dict(LOGICAL_AXIS_RULES)["batch"]
    return () if target is None else ((target,) if isinstance(target, str) else tuple(target))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def data_parallel_size(mesh: Mesh) -> int:
    """How many ways rows are split (the ``batch`` rule's mesh axes)."""
    return math.prod(mesh.shape[axis] for axis in batch_axes())


def check_batch_divisible(batch_size: int, mesh: Mesh, what: str = "batch size") -> None:
    size = data_parallel_size(mesh)
    if batch_size % size:
        raise MeshError(
            f"{what} {batch_size} is not divisible by the data-parallel size data×fsdp = {size}; "
            f"use a multiple of {size}"
        )


@contextlib.contextmanager
def activate(mesh: Mesh, role: str = "train") -> Iterator[Mesh]:
    """Trace under this mesh and a role's logical rules, so activation constraints in the model take effect."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(axis_rules(role)):
        yield mesh


def sampling_mesh(mesh: Mesh, group_size: int) -> Mesh:
    """The same devices as groups of ``group_size`` chips: ``(data = devices / group, fsdp = 1, tensor = group)``.

    The devices keep their order, so a program may take arguments on ``mesh`` and return them on the
    sampling mesh (one device assignment). Consecutive devices of the training mesh form a group: its
    tensor axis is innermost there, so a group of at least ``tensor`` chips holds whole tensor groups.
    """
    devices = mesh.devices.reshape(-1)
    if group_size < 1 or devices.size % group_size:
        raise MeshError(f"sampling group of {group_size} chips does not divide the {devices.size} devices")
    return Mesh(devices.reshape(devices.size // group_size, 1, group_size), MESH_AXES)


def describe(mesh: Mesh, shardings: Any) -> str:
    """One line per sharded leaf kind: how the mesh splits each parameter."""
    lines = [f"mesh {dict(mesh.shape)}"]
    for path, sharding in jax.tree_util.tree_flatten_with_path(shardings)[0]:
        lines.append(f"  {jax.tree_util.keystr(path)}: {sharding.spec}")
    return "\n".join(lines)


def from_every_host(host: np.ndarray, placed: NamedSharding) -> jax.Array:
    """A global array from host data every process holds whole: each device takes its own slice (unlike
    ``jax.device_put`` of host data on several processes, nothing is compared or gathered)."""
    return jax.make_array_from_callback(host.shape, placed, lambda index: host[index])


def to_every_host(*arrays: jax.Array) -> list[np.ndarray]:
    """Small arrays whole on every process: copied to every device of their mesh in one program when they
    span several processes (fetching such an array directly is an error)."""
    if all(array.is_fully_addressable for array in arrays):
        return [np.asarray(jax.device_get(array)) for array in arrays]
    mesh = arrays[0].sharding.mesh
    copies = jax.jit(lambda *values: values, out_shardings=replicated(mesh))(*arrays)
    return [np.asarray(copy.addressable_data(0)) for copy in copies]
