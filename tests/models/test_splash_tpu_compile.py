"""Splash attention compiles for a TPU (compile-only libtpu devices, no chip): the Mosaic kernel, not interpret
mode, chosen from the mesh's devices even though this host is a CPU."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tulu_jax.models import preset
from tulu_jax.models.layers import attention_implementation
from tulu_jax.models.splash import splash_self_attend
from tulu_jax.sharding import MESH_AXES, activate, batch_axes

pytest.importorskip("libtpu")


def test_splash_compiles_for_a_tpu_topology_with_the_mosaic_kernel():
    from jax.experimental import topologies

    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    devices = topologies.get_topology_desc(topology_name="v5e:2x2", platform="tpu").devices
    mesh = Mesh(np.asarray(devices).reshape(1, 2, 2), MESH_AXES)
    batch, length, kv_heads, groups, head_dim = 2, 512, 4, 2, 128
    heads_spec = PartitionSpec(batch_axes(), None, "tensor")

    def spec(shape, partition, dtype=jnp.bfloat16):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, partition))

    args = (spec((batch, length, kv_heads, groups, head_dim), heads_spec),
            spec((batch, length, kv_heads, head_dim), heads_spec),
            spec((batch, length, kv_heads, head_dim), heads_spec),
            spec((batch, length), PartitionSpec(batch_axes()), jnp.int32))

    def loss(q, k, v, segment_ids):
        return jnp.sum(splash_self_attend(q, k, v, segment_ids, mesh=mesh).astype(jnp.float32))

    with activate(mesh):
        assert attention_implementation(preset("tiny")) == "splash"  # auto, from the mesh's TPU devices
        lowered = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*args)
    compiled = lowered.compile().as_text()
    assert "tpu_custom_call" in compiled  # the Pallas kernels, lowered by Mosaic
