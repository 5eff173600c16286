"""The RLVR sampler compiled for a compile-only v5p slice with fsdp > 1: read from the optimized HLO, the
continuous-batching sampler on the sampling layout gathers no weight inside its decode loop, where the
static sampler on the training layout gathers every fsdp-sharded weight at every token (the defect the
sampling layout removes; checked here so the test is known to see such gathers)."""

import jax
import jax.numpy as jnp
import pytest

from tulu_jax import sharding
from tulu_jax.generation import continuous, sampling_layout
from tulu_jax.generation.sampler import compiled_sampler, param_shardings
from tulu_jax.generation.sampling import SamplingConfig
from tulu_jax.models import LlamaConfig
from tulu_jax.models.params import param_shapes
from tulu_jax.planning.chips import parse_topology
from tulu_jax.planning.devices import libtpu_available, topology_devices
from tulu_jax.planning.hlo_collectives import read_collectives
from tulu_jax.planning.hlo_module import HloModule

pytestmark = pytest.mark.skipif(not libtpu_available(), reason="libtpu (a test extra) compiles for TPU")

MODEL = LlamaConfig(vocab_size=1024, hidden_size=256, intermediate_size=768, num_layers=2, num_heads=8,
                    num_kv_heads=4, head_dim=32, max_position_embeddings=512, scan_layers=True,
                    param_dtype="float32", compute_dtype="bfloat16")
ROWS, PROMPT, NEW = 16, 32, 64
SAMPLING = SamplingConfig(temperature=1.0)


def abstract(shapes, shardings):
    return jax.tree.map(lambda shape, where: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=where),
                        shapes, shardings)


def rows_of(shape, where):
    return jax.ShapeDtypeStruct(shape, jnp.int32, sharding=where)


@pytest.fixture(scope="module")
def training_mesh():
    devices = topology_devices(parse_topology("v5p-16"))  # 8 chips
    return sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=4, tensor=2), devices)


def weight_gathers_in_loop(hlo_text: str, weight_shapes: set) -> list:
    """The all-gathers inside a while body whose result has the shape of a weight (whole, or a chip's share
    in the sampling layout: what a gather over fsdp rebuilds of a tensor-sharded weight)."""
    module = HloModule.parse(hlo_text, (NEW,))
    found = []
    for collective in read_collectives(module, 8):
        instruction = module.computations[collective.computation].by_name[collective.name]
        if collective.op == "all-gather" and collective.in_loop and \
                {array.dims for array in instruction.shape} & weight_shapes:
            found.append(collective)
    return found


def weight_shape_set(sample_mesh):
    model = sampling_layout.sampling_model(MODEL)
    shapes = jax.tree.leaves(param_shapes(model))
    shardings = jax.tree.leaves(sampling_layout.sampling_param_shardings(model, sample_mesh))
    return {tuple(leaf.shape) for leaf in shapes} | {
        tuple(where.shard_shape(leaf.shape)) for leaf, where in zip(shapes, shardings)}


def test_static_sampler_on_the_training_layout_gathers_weights_every_token(training_mesh):
    function = compiled_sampler(MODEL, SAMPLING, NEW, (2,), 0, False, training_mesh)
    batch = sharding.batch_sharding(training_mesh)
    # Abstract inputs are built outside the mesh context (their shapes come from an eager trace).
    inputs = (abstract(param_shapes(MODEL), param_shardings(MODEL, training_mesh)),
              rows_of((ROWS, PROMPT), batch), rows_of((ROWS, PROMPT), batch),
              jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=sharding.replicated(training_mesh)))
    with sharding.activate(training_mesh):
        text = function.lower(*inputs).compile().as_text()
    sample_mesh = sampling_layout.sample_mesh_for(training_mesh, MODEL)
    assert len(weight_gathers_in_loop(text, weight_shape_set(sample_mesh))) >= MODEL.num_layers  # 9 here


def test_continuous_sampler_on_the_sampling_layout_gathers_no_weight_in_its_loop(training_mesh):
    sample_mesh = sampling_layout.sample_mesh_for(training_mesh, MODEL)
    assert dict(sample_mesh.shape) == {"data": 4, "fsdp": 1, "tensor": 2}
    model = sampling_layout.sampling_model(MODEL)
    function = continuous.compiled_continuous_sampler(model, SAMPLING, NEW, (2,), 0, continuous.DecodeSlots(), 4,
                                                      sample_mesh)
    rows_2d, rows_1d = continuous.rollout_rows(sample_mesh, 2), continuous.rollout_rows(sample_mesh, 1)
    inputs = (abstract(param_shapes(model), sampling_layout.sampling_param_shardings(model, sample_mesh)),
              rows_of((ROWS, PROMPT), rows_2d), rows_of((ROWS, PROMPT), rows_2d),
              jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=sharding.replicated(sample_mesh)),
              rows_of((ROWS,), rows_1d))
    with sharding.activate(sample_mesh, "sample"):
        text = function.lower(*inputs).compile().as_text()
    assert weight_gathers_in_loop(text, weight_shape_set(sample_mesh)) == []
    collectives = read_collectives(HloModule.parse(text, (NEW,)), 8)
    in_loop = [c for c in collectives if c.in_loop]
    # What a decode step still moves: activation all-reduces within a tensor group, far below one weight.
    weight_bytes_per_chip = sampling_layout.sampling_weight_bytes(MODEL) / 2
    assert in_loop and max(c.bytes_per_chip for c in in_loop) < 0.02 * weight_bytes_per_chip
    assert all(c.group_size <= 2 or c.array_bytes <= 16 for c in in_loop)  # only scalar flags span the groups
    # On TPU each layer's decode attention is the Pallas kernel over the pages (models/paged_attention_kernel.py)
    assert text.count("tpu_custom_call") >= MODEL.num_layers


def test_the_resharding_program_gathers_once_outside_any_loop(training_mesh):
    sample_mesh = sampling_layout.sample_mesh_for(training_mesh, MODEL)
    resharder = sampling_layout.resharder(MODEL, sample_mesh)
    text = resharder.lower(abstract(param_shapes(MODEL), param_shardings(MODEL, training_mesh))).compile().as_text()
    collectives = read_collectives(HloModule.parse(text), 8)
    assert collectives and not any(c.in_loop for c in collectives)
