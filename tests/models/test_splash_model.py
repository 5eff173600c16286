"""A whole Llama with model.attention=splash (Pallas interpret mode) equals attention=xla, forward and backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.config import from_dict
from tulu_jax.errors import ConfigError
from tulu_jax.models import Llama, LlamaConfig, init_params, preset
from tulu_jax.models.layers import attention_implementation
from tulu_jax.sharding import MeshConfig, activate, make_mesh


def test_auto_is_xla_off_tpu_and_splash_on_request():
    assert attention_implementation(preset("tiny")) == ("splash" if jax.default_backend() == "tpu" else "xla")
    assert attention_implementation(preset("tiny", attention="splash")) == "splash"


@pytest.mark.parametrize("field, value, message", [
    ("attention", "flash", "model.attention.*splash"), ("splash_block_q", 100, "model.splash_block_q.*multiple of 128"),
])
def test_attention_settings_are_checked_with_their_names(field, value, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(LlamaConfig, {field: value}, where="model")


def test_model_forward_and_backward_with_splash_equal_xla():
    config = preset("tiny", attention="xla", splash_block_q=128, splash_block_kv=128)
    params = init_params(config, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    length = 200  # pads to two 128-tiles; the second segment crosses the tile boundary
    input_ids = jnp.asarray(rng.integers(2, config.vocab_size, size=(2, length)), jnp.int32)
    segments = np.ones((2, length), np.int32)
    segments[0, 90:160], segments[0, 160:190], segments[0, 190:] = 2, 3, 0
    positions = np.tile(np.arange(length), (2, 1))
    positions[0, 90:160], positions[0, 160:190] = np.arange(70), np.arange(30)
    segments, positions = jnp.asarray(segments), jnp.asarray(positions)
    targets = jax.nn.one_hot(jnp.roll(input_ids, -1, axis=1), config.vocab_size)

    def loss_and_logits(params, config):
        logits = Llama(config).apply({"params": params}, input_ids, positions=positions, segment_ids=segments)
        loss = -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * targets, axis=-1) * (segments > 0))
        return loss, logits

    def run(config):
        return jax.jit(jax.value_and_grad(lambda p: loss_and_logits(p, config), has_aux=True))(params)

    (want_loss, want_logits), want_grads = run(config)
    # Under a mesh: batch over fsdp=2, the 4 query heads over tensor=4, each device taking its one KV head.
    with activate(make_mesh(MeshConfig(data=1, fsdp=2, tensor=4))):
        (got_loss, got_logits), got_grads = run(config.replace(attention="splash"))
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got_logits), np.asarray(want_logits), atol=1e-5, rtol=0)
    for path, got in jax.tree_util.tree_flatten_with_path(got_grads)[0]:
        want = np.asarray(_leaf(want_grads, path))
        # Gradients of a mean loss are small (1e-4 for q_proj), so the bound is also taken relative to each
        # leaf's largest entry.
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-5 * min(1.0, np.abs(want).max()), rtol=0,
                                   err_msg=jax.tree_util.keystr(path))


def _leaf(tree, path):
    for key in path:
        tree = tree[key.key]
    return tree
