"""Model behaviours users rely on: rope scaling, packing, the KV cache, layouts and config checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from tests.models.hf_reference import tiny_hf_config
from tulu_jax.errors import ConfigError
from tulu_jax.models import Llama, LlamaConfig, from_hf_dict, init_cache, init_params, preset, to_hf_dict
from tulu_jax.models.rope import inverse_frequencies


@pytest.fixture(scope="module")
def tiny():
    config = preset("tiny")
    return config, init_params(config, jax.random.PRNGKey(0))


def test_llama3_rope_frequencies_match_transformers():
    hf_config = tiny_hf_config()
    reference, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_config, device="cpu")
    ours = inverse_frequencies(from_hf_dict(hf_config.to_dict()))
    np.testing.assert_allclose(ours, reference.numpy(), rtol=1e-6)
    # The blend region must be non-empty for the test to mean something.
    assert not np.allclose(ours, inverse_frequencies(from_hf_dict(hf_config.to_dict()).replace(rope_scaling=None)))


def test_config_round_trips_through_transformers():
    config = preset("llama3.1-8b")
    hf_config = transformers.LlamaConfig(**to_hf_dict(config))
    again = from_hf_dict(hf_config.to_dict())
    assert again == config.replace(head_dim=128)
    assert hf_config.rope_parameters["rope_type"] == "llama3"
    assert hf_config.rope_parameters["original_max_position_embeddings"] == 8192


def test_legacy_rope_scaling_config_is_read():
    legacy = {
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128256, "hidden_size": 4096,
        "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    }
    config = from_hf_dict(legacy)
    assert config.rope_theta == 500000.0 and config.rope_scaling.factor == 8.0


def test_packed_rows_equal_separate_examples(tiny):
    config, params = tiny
    model = Llama(config)
    first, second = jnp.arange(3, 13)[None], jnp.arange(20, 26)[None]
    packed = jnp.concatenate([first, second, jnp.zeros((1, 4), jnp.int32)], axis=1)
    segment_ids = jnp.array([[1] * 10 + [2] * 6 + [0] * 4])
    positions = jnp.array([list(range(10)) + list(range(6)) + [0] * 4])
    packed_logits = model.apply({"params": params}, packed, positions=positions, segment_ids=segment_ids)
    np.testing.assert_allclose(packed_logits[:, :10], model.apply({"params": params}, first), atol=1e-5)
    np.testing.assert_allclose(packed_logits[:, 10:16], model.apply({"params": params}, second), atol=1e-5)


def test_kv_cache_decode_equals_full_forward(tiny):
    config, params = tiny
    model = Llama(config)
    tokens = jax.random.randint(jax.random.PRNGKey(3), (2, 12), 2, config.vocab_size)
    full = jax.jit(model.apply)({"params": params}, tokens)
    cache = init_cache(config, batch=2, slots=16)
    segments = jnp.ones((2, 1), jnp.int32)
    with_cache = jax.jit(lambda *args: model.apply({"params": params}, *args, method=Llama.with_cache))
    logits, cache = with_cache(
        tokens[:, :5], jnp.broadcast_to(jnp.arange(5), (2, 5)), jnp.ones((2, 5), jnp.int32), cache, jnp.int32(0)
    )
    np.testing.assert_allclose(logits, full[:, :5], atol=1e-4)
    for step in range(5, 12):
        positions = jnp.full((2, 1), step)
        logits, cache = with_cache(tokens[:, step : step + 1], positions, segments, cache, jnp.int32(step))
        np.testing.assert_allclose(logits[:, 0], full[:, step], atol=1e-4)


@pytest.mark.parametrize("policy", [dict(scan_layers=False), dict(remat="full"), dict(remat="dots", scan_layers=False)])
def test_layouts_and_remat_give_the_same_function(tiny, policy):
    config, params = tiny
    from tulu_jax.models.params import layers_as_list, with_layers

    other = config.replace(**policy)
    other_params = with_layers(params, layers_as_list(params, config), other)
    tokens = jnp.arange(2, 18)[None]

    def loss(p, cfg):
        return jax.nn.log_softmax(Llama(cfg).apply({"params": p}, tokens))[..., 5].sum()

    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    value, grads = value_and_grad(other_params, other)
    reference_value, reference = value_and_grad(params, config)
    np.testing.assert_allclose(value, reference_value, rtol=1e-6)
    np.testing.assert_allclose(grads["embed_tokens"]["embedding"], reference["embed_tokens"]["embedding"], rtol=1e-5, atol=1e-5)


def test_bfloat16_compute_stays_close(tiny):
    config, params = tiny
    tokens = jnp.arange(2, 18)[None]
    full = Llama(config).apply({"params": params}, tokens)
    half = Llama(config.replace(compute_dtype="bfloat16")).apply({"params": params}, tokens)
    assert half.dtype == jnp.float32
    assert float(jnp.abs(half - full).max()) < 0.05


def test_heads_must_be_divisible_by_kv_heads():
    with pytest.raises(ConfigError, match="multiple of model.num_kv_heads"):
        LlamaConfig(num_heads=6, num_kv_heads=4, hidden_size=96)


def test_presets_have_the_real_shapes():
    assert preset("llama3.1-8b").num_params() == pytest.approx(8.03e9, rel=0.01)
    assert preset("llama3.1-70b").num_params() == pytest.approx(70.6e9, rel=0.01)
    assert preset("llama3.1-405b").num_params() == pytest.approx(405.9e9, rel=0.01)
    with pytest.raises(ConfigError, match="unknown model preset"):
        preset("llama4")
