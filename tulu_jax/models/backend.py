"""The kind of device a program being traced will run on, which picks the attention kernels.

Under ``jax.set_mesh`` that is the mesh's device, so the planner, tracing on a CPU host for compile-only
TPU devices, gets the TPU kernels and the tiles of that TPU generation; without a mesh, the default device.
This is the one place in ``models/`` that reads the mesh a program is traced under.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax


def target_device() -> tuple[str, str]:
    """``(platform, device_kind)``, e.g. ``("tpu", "TPU v5 lite")`` or ``("cpu", "cpu")``."""
    device = jax.sharding.get_abstract_mesh().abstract_device
    if device is None:
        device = jax.devices()[0]
    return device.platform, device.device_kind


def traced_mesh():
    """The mesh a program is being traced under (``jax.set_mesh``), or None: splash runs its kernel over it."""
    mesh = jax.sharding.get_abstract_mesh()
    return None if mesh.empty else mesh


def free_axes(mesh) -> tuple[str, ...]:
    """The axes of ``mesh`` not already manual (inside a ``shard_map`` over some of them), in mesh order."""
    manual = set(getattr(mesh, "manual_axes", ()) or ())
    return tuple(axis for axis in mesh.axis_names if axis not in manual)


def mesh_axes_for(logical: str, size: int, mesh) -> tuple[str, ...]:
    """The mesh axes the flax rules in force give ``logical``, dropping size-1 axes and axes already manual
    (inside a ``shard_map``); () if they do not divide ``size``."""
    target = nn.logical_to_mesh_axes((logical,))[0]
    axes = () if target is None else ((target,) if isinstance(target, str) else tuple(target))
    free = free_axes(mesh)
    axes = tuple(axis for axis in axes if mesh.shape[axis] > 1 and axis in free)
    if axes and size % math.prod(mesh.shape[axis] for axis in axes):
        return ()
    return axes


def spec_entry(axes: tuple[str, ...]):
    """A ``PartitionSpec`` entry for ``axes``: None, one name, or a tuple of names."""
    return None if not axes else (axes[0] if len(axes) == 1 else axes)
