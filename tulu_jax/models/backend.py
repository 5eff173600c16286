"""The kind of device a program being traced will run on, which picks the attention kernels.

Under ``jax.set_mesh`` that is the mesh's device, so the planner, tracing on a CPU host for compile-only
TPU devices, gets the TPU kernels and the tiles of that TPU generation; without a mesh, the default device.
"""

from __future__ import annotations

import jax


def target_device() -> tuple[str, str]:
    """``(platform, device_kind)``, e.g. ``("tpu", "TPU v5 lite")`` or ``("cpu", "cpu")``."""
    device = jax.sharding.get_abstract_mesh().abstract_device
    if device is None:
        device = jax.devices()[0]
    return device.platform, device.device_kind
