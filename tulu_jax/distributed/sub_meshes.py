"""Two disjoint sub-meshes on one slice, and copying arrays between them without leaving a process.

Asynchronous RLVR decodes on a sampler sub-mesh while the learner trains on the rest of the slice. In
multi-controller JAX (every process runs the same program, no Pathways) an array cannot be ``device_put``
onto a disjoint set of devices across hosts (only TPU's TFRT runtime has experimental support). So:

- ``split_devices`` gives every process the same number of sampler chips among its own devices (its first
  ones), so each process holds chips of both sub-meshes;
- ``copy_across`` moves an array onto the other sub-mesh shard by shard, each process copying the shards
  its own devices hold, device to device. The source must already be laid out so that every process holds,
  on its source devices, every shard its target devices need (``missing_shards`` says which it lacks): the
  caller reshards first, inside the source sub-mesh, where collectives are ordinary.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax

from tulu_jax.errors import MeshError


def split_devices(sampler_chips: int, devices: Sequence[jax.Device] = ()) -> tuple[list, list]:
    """``(sampler devices, learner devices)``: each process gives its first ``sampler_chips / processes``
    devices (by id) to the sampler and the rest to the learner; both lists in process order."""
    devices = list(devices or jax.devices())
    by_process: dict[int, list] = {}
    for device in sorted(devices, key=lambda device: (device.process_index, device.id)):
        by_process.setdefault(device.process_index, []).append(device)
    processes = len(by_process)
    if sampler_chips % processes:
        raise MeshError(f"rollout.sampler_chips={sampler_chips} must divide evenly over the {processes} processes "
                        "(each process holds chips of both the sampler and the learner sub-mesh)")
    per_process = sampler_chips // processes
    local = min(len(chips) for chips in by_process.values())
    if not 0 < per_process < local:
        raise MeshError(f"rollout.sampler_chips={sampler_chips}: each of the {processes} processes would give "
                        f"{per_process} of its {local} devices to the sampler; both sub-meshes need at least one")
    sampler = [device for chips in by_process.values() for device in chips[:per_process]]
    learner = [device for chips in by_process.values() for device in chips[per_process:]]
    return sampler, learner


def _key(index: tuple) -> tuple:
    return tuple((part.start, part.stop, part.step) if isinstance(part, slice) else part for part in index)


def missing_shards(array: jax.Array, target: jax.sharding.Sharding) -> list:
    """The target devices of this process whose shard no source device of this process holds."""
    held = {_key(shard.index) for shard in array.addressable_shards}
    wanted = target.addressable_devices_indices_map(array.shape)
    return [device for device, index in wanted.items() if _key(index) not in held]


def copy_across(array: jax.Array, target: jax.sharding.Sharding) -> jax.Array:
    """``array`` on ``target``'s devices, each target shard copied from a source device of the same process
    holding the same index; no data passes through a host and no process talks to another."""
    lacking = missing_shards(array, target)
    if lacking:
        raise MeshError(f"copy_across: this process holds no source shard for target devices "
                        f"{[device.id for device in lacking]} of an array {array.shape} {array.sharding}; "
                        "reshard it inside its own sub-mesh first")
    held = {_key(shard.index): shard.data for shard in array.addressable_shards}
    pieces = [jax.device_put(held[_key(index)], device)
              for device, index in target.addressable_devices_indices_map(array.shape).items()]
    return jax.make_array_from_single_device_arrays(array.shape, target, pieces)


def copy_tree_across(tree: Any, targets: Any) -> Any:
    """``copy_across`` leaf by leaf (``targets``: a matching tree of shardings)."""
    return jax.tree.map(copy_across, tree, targets)
