"""Vocabulary growth for Tülu 3's ``<pad>`` token: sizes, mean rows like ``transformers``' resize, unchanged
logits for old tokens, and sharded tables grown in place on the 8 forced CPU devices (tests/conftest.py).

The real Llama 3 tokenizer (Meta's tiktoken file from the ``llama-models`` package, Llama 3 Community License;
see tests/helpers/llama3_tokenizer.py) gives the 128,257-token size that becomes 128,264 rows.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tulu_jax.errors import ConfigError
from tulu_jax.models.config import preset
from tulu_jax.models.llama import Llama
from tulu_jax.models.params import init_params
from tulu_jax.models.vocab_resize import (
    _grow_fn, padded_vocab_size, resize_vocab, vocab_size_for_tokenizer, vocab_size_of,
)


def test_sizes_round_up_and_never_shrink():
    assert padded_vocab_size(128257) == 128264 and padded_vocab_size(128256) == 128256
    assert padded_vocab_size(128257, multiple=64) == 128320 and padded_vocab_size(5, multiple=1) == 5
    assert vocab_size_for_tokenizer(128257, 128256) == 128264
    assert vocab_size_for_tokenizer(128256, 128256) == 128256
    assert vocab_size_for_tokenizer(128256, 128264) == 128264  # base tokenizer on a Tülu checkpoint: no change
    with pytest.raises(ConfigError, match="positive integer"):
        padded_vocab_size(128257, multiple=0)


def _tables(vocab=96, embed=16, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "embed_tokens": {"embedding": jnp.asarray(rng.normal(0, 0.02, (vocab, embed)), jnp.float32)},
        "lm_head": {"kernel": jnp.asarray(rng.normal(0, 0.02, (embed, vocab)), jnp.float32)},
        "norm": {"scale": jnp.ones((embed,), jnp.float32)},
    }


def test_shrinking_is_refused_and_the_same_size_is_a_no_op():
    params = _tables()
    with pytest.raises(ConfigError, match="cannot shrink the vocabulary from 96 to 88 rows"):
        resize_vocab(params, 88)
    assert resize_vocab(params, 96) is params


@pytest.mark.parametrize("tied", [False, True])
def test_new_rows_match_transformers_resize_token_embeddings(tied):
    import torch
    import transformers

    from tests.models.hf_reference import tiny_hf_config

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(tiny_hf_config(tie_word_embeddings=tied, vocab_size=96)).float()
    params = {"embed_tokens": {"embedding": jnp.asarray(model.model.embed_tokens.weight.detach().numpy())}}
    if not tied:
        params["lm_head"] = {"kernel": jnp.asarray(model.lm_head.weight.detach().numpy().T)}
    tokenizer_size = 97  # one added token, like Tülu's <pad>
    model.resize_token_embeddings(tokenizer_size, pad_to_multiple_of=8)  # transformers' default: mean_resizing
    ours = resize_vocab(params, vocab_size_for_tokenizer(tokenizer_size, 96), tie_word_embeddings=tied)

    expected_embedding = model.model.embed_tokens.weight.detach().numpy()
    assert ours["embed_tokens"]["embedding"].shape == expected_embedding.shape == (104, 64)
    # transformers samples around the mean with covariance 1e-9 x the rows' covariance: ~1e-6 here.
    np.testing.assert_allclose(ours["embed_tokens"]["embedding"], expected_embedding, rtol=0, atol=2e-5)
    np.testing.assert_array_equal(ours["embed_tokens"]["embedding"][:96], expected_embedding[:96])
    if tied:
        assert "lm_head" not in ours
    else:
        expected_head = model.lm_head.weight.detach().numpy().T
        np.testing.assert_allclose(ours["lm_head"]["kernel"], expected_head, rtol=0, atol=2e-5)
        np.testing.assert_array_equal(ours["lm_head"]["kernel"][:, :96], expected_head[:, :96])


def test_old_token_logits_are_unchanged_and_new_rows_are_means():
    config = preset("tiny")  # vocab 256, untied
    params = init_params(config, jax.random.PRNGKey(0))
    grown = resize_vocab(params, 264)
    assert vocab_size_of(grown) == 264 and grown["lm_head"]["kernel"].shape == (64, 264)
    old_ids = jnp.asarray([[5, 17, 200, 3]], jnp.int32)
    hidden = jax.jit(functools.partial(Llama(config).apply, return_hidden=True))({"params": params}, old_ids)
    logits = jax.jit(Llama(dataclasses.replace(config, vocab_size=264)).apply)({"params": grown}, old_ids)
    kernel = np.asarray(params["lm_head"]["kernel"], np.float64)  # [embed, 256]
    expected = np.asarray(hidden, np.float64) @ np.concatenate([kernel, kernel.mean(1, keepdims=True).repeat(8, 1)], 1)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-5)
    # A new token id (the pad) embeds as the mean row.
    np.testing.assert_allclose(grown["embed_tokens"]["embedding"][260], params["embed_tokens"]["embedding"].mean(0),
                               rtol=1e-6, atol=1e-7)


def test_bfloat16_tables_keep_their_dtype():
    params = jax.tree.map(lambda leaf: leaf.astype(jnp.bfloat16), _tables())
    grown = resize_vocab(params, 104)
    assert grown["embed_tokens"]["embedding"].dtype == grown["lm_head"]["kernel"].dtype == jnp.bfloat16


@pytest.fixture(scope="module")
def mesh():
    assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
    return Mesh(np.asarray(jax.devices()).reshape(2, 4), ("fsdp", "tensor"))


def test_sharded_tables_grow_in_their_own_sharding(mesh):
    """The logical rules put ``vocab`` on ``tensor`` and ``embed`` on ``fsdp``; the shard boundaries move
    (64/4 → 72/4 rows a shard) and the result equals the unsharded one."""
    host = _tables(vocab=64, embed=16)
    shardings = {"embed_tokens": {"embedding": NamedSharding(mesh, PartitionSpec("tensor", "fsdp"))},
                 "lm_head": {"kernel": NamedSharding(mesh, PartitionSpec("fsdp", "tensor"))},
                 "norm": {"scale": NamedSharding(mesh, PartitionSpec())}}
    sharded = jax.tree.map(jax.device_put, host, shardings)
    grown = resize_vocab(sharded, 72)
    expected = resize_vocab(host, 72)
    for path in (("embed_tokens", "embedding"), ("lm_head", "kernel")):
        leaf = grown[path[0]][path[1]]
        assert leaf.sharding == shardings[path[0]][path[1]], path
        # Old rows are copied; the mean is reduced across shards (summation order differs by ~1e-9).
        np.testing.assert_allclose(np.asarray(leaf), np.asarray(expected[path[0]][path[1]]), rtol=0, atol=1e-8)
        old = (slice(0, 64), slice(None)) if path[0] == "embed_tokens" else (slice(None), slice(0, 64))
        np.testing.assert_array_equal(np.asarray(leaf)[old], np.asarray(host[path[0]][path[1]]))
    assert grown["embed_tokens"]["embedding"].addressable_shards[0].data.shape == (18, 8)
    assert grown["norm"]["scale"] is sharded["norm"]["scale"]


def test_a_size_the_mesh_no_longer_divides_replicates_that_dimension(mesh):
    """jax refuses uneven shards: 66 rows over tensor=4 fall back to replicated rows, embed stays on fsdp."""
    sharding = NamedSharding(mesh, PartitionSpec("tensor", "fsdp"))
    table = jax.device_put(_tables(vocab=64)["embed_tokens"]["embedding"], sharding)
    grown = resize_vocab({"embed_tokens": {"embedding": table}}, 66, tie_word_embeddings=True)
    leaf = grown["embed_tokens"]["embedding"]
    assert leaf.shape == (66, 16) and leaf.sharding.spec == PartitionSpec(None, "fsdp")
    np.testing.assert_array_equal(np.asarray(leaf)[:64], np.asarray(table))


@pytest.mark.parametrize("vocab_size", [264, 260])  # 260 rows: tensor=8 no longer divides the vocabulary
def test_stage_shardings_for_the_grown_config_are_honoured(vocab_size):
    """The stage's wiring: load with the checkpoint's shardings, grow into the shardings of the grown config."""
    from tulu_jax.models.params import param_logical_axes, param_shapes
    from tulu_jax.sharding import MeshConfig, make_mesh, tree_shardings

    stage_mesh = make_mesh(MeshConfig(fsdp=1, tensor=8))
    config = preset("tiny")
    grown_config = dataclasses.replace(config, vocab_size=vocab_size)

    def shardings_for(c):
        return tree_shardings(stage_mesh, param_logical_axes(c), param_shapes(c))

    params = jax.jit(lambda key: init_params(config, key), out_shardings=shardings_for(config))(jax.random.PRNGKey(0))
    target = shardings_for(grown_config)
    grown = resize_vocab(params, vocab_size, tie_word_embeddings=config.tie_word_embeddings, shardings=target)
    for module, name in (("embed_tokens", "embedding"), ("lm_head", "kernel")):
        assert grown[module][name].sharding == target[module][name]
    assert jax.tree.structure(grown) == jax.tree.structure(target)
    expected_rows = "tensor" if vocab_size == 264 else None
    assert target["embed_tokens"]["embedding"].spec == PartitionSpec(expected_rows, None)


def test_sharded_growth_never_gathers_the_table(mesh):
    """Compiled for 8 devices: no all-gather, and each device's output plus scratch stays under half the table."""
    sharding = NamedSharding(mesh, PartitionSpec("tensor", "fsdp"))
    table = jax.device_put(jnp.ones((1024, 64), jnp.float32), sharding)
    compiled = jax.jit(functools.partial(_grow_fn, size=1032, axis=0), out_shardings=sharding).lower(table).compile()
    assert "all-gather" not in compiled.as_text()
    memory = compiled.memory_analysis()
    assert memory.output_size_in_bytes + memory.temp_size_in_bytes < 1032 * 64 * 4 / 2


def test_tulu_pad_token_grows_llama_vocab_to_128264(mesh, tmp_path):
    """The real Llama 3 tokenizer plus ``<pad>`` (128,257 tokens) on a 128,256-row table sharded over 8 devices."""
    from data_pipeline.tokenizer import load_tokenizer
    from tests.helpers.llama3_tokenizer import LLAMA3_VOCAB_SIZE, PAD, build_llama3_tokenizer

    tokenizer = load_tokenizer(build_llama3_tokenizer(tmp_path, pad_token=PAD))
    size = vocab_size_for_tokenizer(tokenizer.vocab_size, LLAMA3_VOCAB_SIZE)
    assert (tokenizer.vocab_size, size, tokenizer.pad_id) == (128257, 128264, 128256)
    embed = 8  # the table is 128k rows; keep it a few MB
    sharding = NamedSharding(mesh, PartitionSpec(("fsdp", "tensor"), None))
    rows = jax.jit(lambda: jax.random.normal(jax.random.PRNGKey(0), (LLAMA3_VOCAB_SIZE, embed)),
                   out_shardings=sharding)()
    grown = resize_vocab({"embed_tokens": {"embedding": rows}}, size, tie_word_embeddings=True)
    table = grown["embed_tokens"]["embedding"]
    assert table.shape == (128264, embed) and table.sharding == sharding
    np.testing.assert_allclose(np.asarray(table[tokenizer.pad_id]), np.asarray(rows).mean(0), rtol=1e-5, atol=1e-6)
