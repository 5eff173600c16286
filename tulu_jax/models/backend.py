"""The kind of device a program being traced will run on, which picks the attention kernels.

Under ``jax.set_mesh`` that is the mesh's device, so the planner, tracing on a CPU host for compile-only
TPU devices, gets the TPU kernels and the tiles of that TPU generation; without a mesh, the default device.
This is the one place in ``models/`` that reads the mesh a program is traced under.
"""

from __future__ import annotations

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
