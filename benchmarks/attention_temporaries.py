"""Per-chip temporaries and compile time of one attention forward+backward, XLA path vs splash, for a TPU.

    python -m benchmarks.attention_temporaries [--topology v5p:2x2x1] [--batch 8] [--length 4096]

Compiled ahead of time for compile-only libtpu devices (no chip needed): Llama 3.1 8B attention (32 query
heads, 8 KV heads of 128) in bfloat16, batch over (data, fsdp) and heads over tensor as the trainer shards
them. One layer's attention only; the planner measures whole steps.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tulu_jax.models.attention import causal_self_attend
from tulu_jax.models.splash import block_sizes, splash_self_attend
from tulu_jax.sharding import MESH_AXES, activate, batch_axes

KV_HEADS, GROUPS, HEAD_DIM = 8, 4, 128


def run(topology: str = "v5p:2x2x1", batch: int = 8, length: int = 4096, tensor: int = 2) -> dict:
    from jax.experimental import topologies

    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    devices = topologies.get_topology_desc(topology_name=topology, platform="tpu").devices
    mesh = Mesh(np.asarray(devices).reshape(1, len(devices) // tensor, tensor), MESH_AXES)
    heads = PartitionSpec(batch_axes(), None, "tensor")

    def spec(shape, partition, dtype=jnp.bfloat16):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, partition))

    args = (spec((batch, length, KV_HEADS, GROUPS, HEAD_DIM), heads), spec((batch, length, KV_HEADS, HEAD_DIM), heads),
            spec((batch, length, KV_HEADS, HEAD_DIM), heads),
            spec((batch, length), PartitionSpec(batch_axes()), jnp.int32))
    _, tiles = block_sizes(length, device_kind=devices[0].device_kind)
    result = {"topology": topology, "device_kind": devices[0].device_kind, "mesh": dict(mesh.shape), "batch": batch,
              "length": length, "splash_tiles": [tiles.block_q, tiles.block_kv, tiles.block_kv_compute]}
    for name, attend in (("xla", causal_self_attend), ("splash", functools.partial(splash_self_attend, mesh=mesh))):
        def loss(q, k, v, segment_ids):
            return jnp.sum(attend(q, k, v, segment_ids).astype(jnp.float32))

        start = time.perf_counter()
        with activate(mesh):
            compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*args).compile()
        memory = compiled.memory_analysis()
        result[name] = {"compile_s": round(time.perf_counter() - start, 1),
                        "temporaries_gib_per_chip": round(memory.temp_size_in_bytes / 2**30, 3)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", default="v5p:2x2x1")
    parser.add_argument("--batch", type=int, default=8, help="global batch (rows of --length tokens)")
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--tensor", type=int, default=2, help="mesh tensor axis; fsdp takes the other chips")
    args = parser.parse_args()
    print(json.dumps(run(args.topology, args.batch, args.length, args.tensor), indent=2))


if __name__ == "__main__":
    main()
