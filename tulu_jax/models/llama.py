"""Llama 3.1 as a pure-functional Flax linen module.

``Llama(config).apply({"params": params}, input_ids, positions=..., segment_ids=...)`` gives logits
``[batch, length, vocab]`` (``return_hidden=True``: final-norm hidden states ``[batch, length, embed]``).
``method=Llama.with_cache`` runs the same trunk while reading and writing a preallocated KV cache.
Layers are stacked under ``params["layers"]`` with a leading ``layers`` axis when ``scan_layers`` is on,
else stored as ``layers_0 ... layers_{n-1}``.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from tulu_jax.models.config import LlamaConfig
from tulu_jax.models.layers import DecoderLayer, RMSNorm, _dtype, _param
from tulu_jax.models.paged_attention import PagedLayerCache
from tulu_jax.models.rope import rotary_tables

REMAT_POLICIES = {
    "full": None,  # save nothing: recompute the whole layer in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def init_cache(config: LlamaConfig, batch: int, slots: int, dtype=None) -> dict:
    """An empty KV cache for ``slots`` positions: keys/values per layer plus the segment id of each slot.

    Per layer, keys are ``[batch, kv_heads, slots, head_dim]`` and values ``[batch, kv_heads, head_dim, slots]``
    (the layouts a decoding step reads without transposing: see ``attention.attend_cache``). Each is one
    stacked ``[layers, ...]`` array when the layers are scanned, a tuple of per-layer arrays when unrolled
    (each then updated in place, with no copy of the whole cache per decoded token).
    """
    dtype = dtype or _dtype(config.compute_dtype)
    key_shape = (batch, config.num_kv_heads, slots, config.resolved_head_dim)
    value_shape = (batch, config.num_kv_heads, config.resolved_head_dim, slots)
    if config.scan_layers:
        keys, values = (jnp.zeros((config.num_layers, *shape), dtype) for shape in (key_shape, value_shape))
    else:
        keys, values = (tuple(jnp.zeros(shape, dtype) for _ in range(config.num_layers))
                        for shape in (key_shape, value_shape))
    return {"key": keys, "value": values, "segment_ids": jnp.zeros((batch, slots), jnp.int32)}  # 0: empty/pad


def default_positions(input_ids: jnp.ndarray) -> jnp.ndarray:
    return jnp.broadcast_to(jnp.arange(input_ids.shape[1], dtype=jnp.int32), input_ids.shape)


def unembedding_matrix(params, config: LlamaConfig) -> jnp.ndarray:
    """The ``[embed, vocab]`` output projection (the transposed embedding table when tied)."""
    if config.tie_word_embeddings:
        return params["embed_tokens"]["embedding"].T
    return params["lm_head"]["kernel"]


class Llama(nn.Module):
    config: LlamaConfig
    with_lm_head: bool = True  # False for scalar-head models (reward/value), which never need logits

    def setup(self) -> None:
        c = self.config
        self.embed_tokens = nn.Embed(
            c.vocab_size,
            c.hidden_size,
            embedding_init=nn.with_logical_partitioning(nn.initializers.normal(stddev=0.02), ("vocab", "embed")),
            param_dtype=_dtype(c.param_dtype),
            dtype=_dtype(c.compute_dtype),
        )
        layer_class = DecoderLayer
        if c.remat != "none":
            layer_class = nn.remat(layer_class, policy=REMAT_POLICIES[c.remat], prevent_cse=not c.scan_layers)
        if c.scan_layers:
            self.layers = nn.scan(
                layer_class,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, 0, nn.broadcast),
                length=c.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(c, name="layers")
        else:
            self.layer_list = [layer_class(c, name=f"layers_{i}") for i in range(c.num_layers)]
        self.norm = RMSNorm(c, name="norm")
        if self.with_lm_head and not c.tie_word_embeddings:
            self.lm_head = _LMHead(c, name="lm_head")

    def __call__(
        self,
        input_ids: jnp.ndarray,  # [batch, length] int32
        positions: Optional[jnp.ndarray] = None,
        segment_ids: Optional[jnp.ndarray] = None,
        return_hidden: bool = False,
    ) -> jnp.ndarray:
        positions = default_positions(input_ids) if positions is None else positions
        segment_ids = jnp.ones_like(input_ids) if segment_ids is None else segment_ids
        hidden, _ = self._trunk(input_ids, positions, segment_ids, segment_ids, None, jnp.int32(0))
        return hidden if return_hidden else self.logits(hidden)

    def with_cache(
        self,
        input_ids: jnp.ndarray,
        positions: jnp.ndarray,
        segment_ids: jnp.ndarray,
        cache: dict[str, jnp.ndarray],
        cache_index: jnp.ndarray,
    ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
        """Write this chunk's keys/values at ``cache_index`` and attend over the whole cache; returns logits."""
        key_segment_ids = jax.lax.dynamic_update_slice_in_dim(cache["segment_ids"], segment_ids, cache_index, axis=1)
        layer_cache = {"key": cache["key"], "value": cache["value"]}
        hidden, layer_cache = self._trunk(input_ids, positions, segment_ids, key_segment_ids, layer_cache, cache_index)
        return self.logits(hidden), {**layer_cache, "segment_ids": key_segment_ids}

    def with_pages(
        self,
        input_ids: jnp.ndarray,  # [rows, length]
        positions: jnp.ndarray,  # [rows, length]
        segment_ids: jnp.ndarray,  # [rows, length]: 1 on real tokens (prefill pads: 0)
        pages: tuple,  # per layer [pages, 2 * kv_heads, page_size, head_dim]
        where: PagedLayerCache,  # page table, write slots and lengths; its ``pages`` field is unused
        last: Optional[jnp.ndarray] = None,  # [rows]: project only token ``last[r]`` of row ``r`` (a prefill)
    ) -> tuple[jnp.ndarray, tuple]:
        """The trunk over a paged KV cache (unrolled layers only); returns logits (``[rows, length, vocab]``, or
        ``[rows, 1, vocab]`` with ``last``) and the updated pages. Every token's keys and values are written."""
        if self.config.scan_layers:
            raise ValueError("paged decoding runs on unrolled layers; unstack them first (models.params.with_layers)")
        x = self.embed_tokens(input_ids)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        cos, sin = rotary_tables(self.config, positions)
        new_pages = []
        for index, layer in enumerate(self.layer_list):
            x, layer_cache = layer(x, cos, sin, segment_ids, segment_ids, where._replace(pages=pages[index]), None)
            new_pages.append(layer_cache.pages)
        if last is not None:
            x = jnp.take_along_axis(x, last[:, None, None], axis=1)  # [rows, 1, hidden]
        return self.logits(self.norm(x)), tuple(new_pages)

    def logits(self, hidden: jnp.ndarray) -> jnp.ndarray:
        if self.config.tie_word_embeddings:
            table = self.embed_tokens.embedding.astype(hidden.dtype)
            logits = jnp.einsum("bld,vd->blv", hidden, table)
        else:
            logits = self.lm_head(hidden)
        return logits.astype(jnp.float32)

    def _trunk(self, input_ids, positions, query_segment_ids, key_segment_ids, cache, cache_index):
        x = self.embed_tokens(input_ids)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        cos, sin = rotary_tables(self.config, positions)
        if self.config.scan_layers:
            x, cache = self.layers(x, cos, sin, query_segment_ids, key_segment_ids, cache, cache_index)
        else:
            new_keys, new_values = [], []
            for index, layer in enumerate(self.layer_list):
                layer_cache = None if cache is None else {"key": cache["key"][index], "value": cache["value"][index]}
                x, layer_cache = layer(x, cos, sin, query_segment_ids, key_segment_ids, layer_cache, cache_index)
                if layer_cache is not None:
                    new_keys.append(layer_cache["key"])
                    new_values.append(layer_cache["value"])
            if cache is not None:
                cache = {"key": tuple(new_keys), "value": tuple(new_values)}
        return self.norm(x), cache


class _LMHead(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, hidden: jnp.ndarray) -> jnp.ndarray:
        kernel = _param(self, "kernel", (self.config.hidden_size, self.config.vocab_size), ("embed", "vocab"))
        return jnp.einsum("bld,dv->blv", hidden, kernel.astype(hidden.dtype))
