"""Compile-only TPU devices for a topology, from libtpu, on a machine without TPUs."""

from __future__ import annotations

import functools
import importlib.util
import os

import jax

from tulu_jax.errors import MeshError
from tulu_jax.planning.chips import Topology

INSTALL_HINT = "install the TPU compiler with `pip install libtpu` (or `pip install -e .[tpu-plan]`)"


def libtpu_available() -> bool:
    return importlib.util.find_spec("libtpu") is not None


@functools.lru_cache(maxsize=None)
def _topology_devices(libtpu_name: str, chip_family: str) -> tuple[jax.Device, ...]:
    from jax.experimental import topologies

    # libtpu guards real chips with a lockfile; compile-only devices touch no chip, and without this a
    # second planner process (or a stale lockfile) would fail to load the compiler.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

    # v4 and v5p pair their two TensorCores into one device per chip ("megacore"); libtpu's
    # default for v4 is one device per core, which would double the device count.
    options = {"chip_config_name": "megacore"} if chip_family == "v4" else {}
    return tuple(topologies.get_topology_desc(topology_name=libtpu_name, platform="tpu", **options).devices)


def topology_devices(topology: Topology) -> list[jax.Device]:
    """One compile-only device per chip of ``topology``; MeshError when libtpu is missing or refuses it."""
    if not libtpu_available():
        raise MeshError(f"planning for {topology.requested} needs the TPU compiler: {INSTALL_HINT}")
    try:
        devices = list(_topology_devices(topology.libtpu_name, topology.chip.name))
    except Exception as error:  # noqa: BLE001 - libtpu reports bad layouts as runtime errors
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise MeshError(f"libtpu cannot build topology {topology.libtpu_name} (from {topology.requested!r}): {message}") from None
    if len(devices) != topology.num_chips:
        raise MeshError(
            f"libtpu gave {len(devices)} devices for {topology.libtpu_name}, expected one per chip ({topology.num_chips})"
        )
    return devices
