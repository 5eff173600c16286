"""Meshes on 8 forced CPU devices: the same loss and gradients as one device, shardings as the rules say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax import sharding
from tulu_jax.errors import MeshError
from tulu_jax.models import Llama, init_params, param_logical_axes, preset
from tulu_jax.models.params import param_shapes

CONFIG = preset("tiny")


def loss_fn(params, tokens):
    logits = Llama(CONFIG).apply({"params": params}, tokens)
    logprobs = jax.nn.log_softmax(logits[:, :-1])
    return -jnp.take_along_axis(logprobs, tokens[:, 1:, None], axis=-1).mean()


@pytest.fixture(scope="module")
def single_device():
    params = init_params(CONFIG, jax.random.PRNGKey(0))
    tokens = jax.random.randint(jax.random.PRNGKey(1), (8, 16), 2, CONFIG.vocab_size)
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, tokens)
    return params, tokens, loss, grads


@pytest.mark.parametrize("shape", [(8, 1, 1), (1, 8, 1), (2, 2, 2), (1, 2, 4)], ids=str)
def test_sharded_loss_and_grads_equal_single_device(single_device, shape):
    assert jax.device_count() == 8
    params, tokens, reference_loss, reference_grads = single_device
    mesh = sharding.make_mesh(sharding.MeshConfig(*shape))
    shardings = sharding.tree_shardings(mesh, param_logical_axes(CONFIG), param_shapes(CONFIG))
    with sharding.activate(mesh):
        step = jax.jit(
            jax.value_and_grad(loss_fn),
            in_shardings=(shardings, sharding.batch_sharding(mesh)),
            out_shardings=(sharding.replicated(mesh), shardings),
        )
        loss, grads = step(jax.device_put(params, shardings), jax.device_put(tokens, sharding.batch_sharding(mesh)))
    np.testing.assert_allclose(loss, reference_loss, atol=1e-5)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(reference_grads)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert grads["layers"]["mlp"]["gate_proj"]["kernel"].sharding == shardings["layers"]["mlp"]["gate_proj"]["kernel"]


def test_parameter_shardings_follow_the_rules():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=2, tensor=2))
    shardings = sharding.tree_shardings(mesh, param_logical_axes(CONFIG), param_shapes(CONFIG))
    spec = lambda *path: shardings[path[0]] if len(path) == 1 else spec_of(shardings, path)  # noqa: E731
    assert spec_of(shardings, ("layers", "self_attn", "q_proj", "kernel")) == (None, "fsdp", "tensor", None)
    assert spec_of(shardings, ("layers", "mlp", "down_proj", "kernel")) == (None, "tensor", "fsdp")
    assert spec_of(shardings, ("embed_tokens", "embedding")) == ("tensor", "fsdp")
    assert spec_of(shardings, ("lm_head", "kernel")) == ("fsdp", "tensor")
    assert spec_of(shardings, ("norm", "scale")) == (None,)
    del spec


def test_undividable_dimension_is_replicated():
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=2, tensor=4))
    shardings = sharding.tree_shardings(mesh, param_logical_axes(CONFIG), param_shapes(CONFIG))
    # 2 KV heads cannot be split 4 ways: replicated on that dim, still sharded over fsdp on embed.
    assert spec_of(shardings, ("layers", "self_attn", "k_proj", "kernel")) == (None, "fsdp", None, None)
    assert spec_of(shardings, ("layers", "self_attn", "q_proj", "kernel")) == (None, "fsdp", "tensor", None)


def spec_of(shardings, path):
    node = shardings
    for key in path:
        node = node[key]
    return tuple(node.spec) + (None,) * (len(node.shape_hint) if hasattr(node, "shape_hint") else 0)


def test_mesh_that_does_not_fit_is_a_clear_error():
    with pytest.raises(MeshError, match="8 devices"):
        sharding.make_mesh(sharding.MeshConfig(data=3, fsdp=1, tensor=1))
    with pytest.raises(MeshError, match="at most one"):
        sharding.MeshConfig(data=-1, fsdp=-1)
    mesh = sharding.make_mesh(sharding.MeshConfig(data=2, fsdp=-1))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    with pytest.raises(MeshError, match="not divisible by the data-parallel size"):
        sharding.check_batch_divisible(6, mesh)
