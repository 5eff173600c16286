"""The pieces of a Llama 3.1 decoder layer: RMSNorm, grouped-query attention with an optional KV cache, SwiGLU.

Every parameter carries logical axis names; ``tulu_jax.sharding`` maps them to mesh axes.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from tulu_jax.models.config import LlamaConfig
from tulu_jax.models.rope import apply_rotary

# Finite, so rows whose keys are all masked (padding queries) give a uniform softmax instead of NaN.
MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)

KVCache = dict[str, jnp.ndarray]  # per layer: "key", "value" [batch, slots, kv_heads, head_dim]


def _dtype(name: str) -> Any:
    return jnp.bfloat16 if name == "bfloat16" else jnp.float32


def _param(module: nn.Module, name: str, shape: tuple[int, ...], axes: tuple[str, ...], init=None) -> jnp.ndarray:
    init = init or nn.initializers.normal(stddev=0.02)
    dtype = _dtype(module.config.param_dtype)
    return module.param(name, nn.with_logical_partitioning(init, axes), shape, dtype)


class RMSNorm(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        scale = _param(self, "scale", (x.shape[-1],), ("norm",), nn.initializers.ones)
        # Statistics in float32, as the reference does, whatever the compute dtype.
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.config.rms_norm_eps)
        return (scale.astype(jnp.float32) * normed).astype(_dtype(self.config.compute_dtype))


class Projection(nn.Module):
    """A bias-free linear map stored as ``{"kernel": [in..., out...]}`` and applied with one einsum."""

    config: LlamaConfig
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    equation: str

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = _param(self, "kernel", self.shape, self.axes)
        dtype = _dtype(self.config.compute_dtype)
        return jnp.einsum(self.equation, x.astype(dtype), kernel.astype(dtype))


class Attention(nn.Module):
    """Grouped-query attention: each KV head serves a group of query heads without copying K/V."""

    config: LlamaConfig

    @nn.compact
    def __call__(
        self,
        x: jnp.ndarray,  # [batch, length, embed]
        cos: jnp.ndarray,
        sin: jnp.ndarray,
        query_segment_ids: jnp.ndarray,  # [batch, length]
        key_segment_ids: jnp.ndarray,  # [batch, slots]
        cache: Optional[KVCache],
        cache_index: jnp.ndarray,
    ) -> tuple[jnp.ndarray, Optional[KVCache]]:
        c = self.config
        d, h, kvh, hd = c.hidden_size, c.num_heads, c.num_kv_heads, c.resolved_head_dim
        groups = h // kvh
        q = Projection(c, (d, h, hd), ("embed", "heads", "head_dim"), "bld,dhk->blhk", name="q_proj")(x)
        k = Projection(c, (d, kvh, hd), ("embed", "kv_heads", "head_dim"), "bld,dhk->blhk", name="k_proj")(x)
        v = Projection(c, (d, kvh, hd), ("embed", "kv_heads", "head_dim"), "bld,dhk->blhk", name="v_proj")(x)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)

        length = x.shape[1]
        if cache is not None:
            k = jax.lax.dynamic_update_slice_in_dim(cache["key"], k.astype(cache["key"].dtype), cache_index, axis=1)
            v = jax.lax.dynamic_update_slice_in_dim(cache["value"], v.astype(cache["value"].dtype), cache_index, axis=1)
            cache = {"key": k, "value": v}
        slots = k.shape[1]

        q = q.reshape(q.shape[0], length, kvh, groups, hd)  # [batch, length, kv_heads, groups, head_dim]
        scores = jnp.einsum("blkgd,bskd->bkgls", q, k.astype(q.dtype)).astype(jnp.float32)
        scores = scores * (hd**-0.5)
        query_slots = cache_index + jnp.arange(length)
        causal = query_slots[:, None] >= jnp.arange(slots)[None, :]  # [length, slots]
        same_segment = query_segment_ids[:, :, None] == key_segment_ids[:, None, :]  # [batch, length, slots]
        allowed = causal[None] & same_segment
        scores = jnp.where(allowed[:, None, None], scores, MASK_VALUE)
        weights = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
        out = jnp.einsum("bkgls,bskd->blkgd", weights, v.astype(q.dtype)).reshape(x.shape[0], length, h, hd)
        out = Projection(c, (h, hd, d), ("heads", "head_dim", "embed"), "blhk,hkd->bld", name="o_proj")(out)
        return out, cache


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = self.config
        gate = Projection(c, (c.hidden_size, c.intermediate_size), ("embed", "mlp"), "bld,df->blf", name="gate_proj")(x)
        up = Projection(c, (c.hidden_size, c.intermediate_size), ("embed", "mlp"), "bld,df->blf", name="up_proj")(x)
        hidden = nn.with_logical_constraint(jax.nn.silu(gate) * up, ("batch", "length", "act_mlp"))
        return Projection(c, (c.intermediate_size, c.hidden_size), ("mlp", "embed"), "blf,fd->bld", name="down_proj")(
            hidden
        )


class DecoderLayer(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x, cos, sin, query_segment_ids, key_segment_ids, cache, cache_index):
        attention_out, cache = Attention(self.config, name="self_attn")(
            RMSNorm(self.config, name="input_layernorm")(x),
            cos,
            sin,
            query_segment_ids,
            key_segment_ids,
            cache,
            cache_index,
        )
        x = x + attention_out
        x = x + MLP(self.config, name="mlp")(RMSNorm(self.config, name="post_attention_layernorm")(x))
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        return x, cache
