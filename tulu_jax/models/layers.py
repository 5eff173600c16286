"""The pieces of a Llama 3.1 decoder layer: RMSNorm, grouped-query attention with an optional KV cache, SwiGLU.

Every parameter carries logical axis names; ``tulu_jax.sharding`` maps them to mesh axes.
"""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from tulu_jax.models.attention import attend_cache, causal_self_attend
from tulu_jax.models.backend import target_device, traced_mesh
from tulu_jax.models.config import LlamaConfig
from tulu_jax.models.decode_attention import attend_filled_cache
from tulu_jax.models.paged_attention import PagedLayerCache, paged_attention
from tulu_jax.models.rope import apply_rotary
from tulu_jax.ops.linear import linear

# Per layer: "key" [batch, kv_heads, slots, head_dim], "value" [batch, kv_heads, head_dim, slots]; or the
# pages of a continuous-batching sampler (models.paged_attention.PagedLayerCache).
KVCache = dict[str, jnp.ndarray]


def attention_implementation(config: LlamaConfig) -> str:
    """``"splash"`` or ``"xla"``: ``model.attention``, with ``auto`` = splash when the traced program targets
    a TPU (see ``backend.target_device``) and xla elsewhere."""
    if config.attention != "auto":
        return config.attention
    return "splash" if target_device()[0] == "tpu" else "xla"


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
    """A bias-free linear map stored as ``{"kernel": [in..., out...]}``: the last ``num_input_dims`` dims of
    the input contract with the kernel's leading dims."""

    config: LlamaConfig
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    num_input_dims: int = 1

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = _param(self, "kernel", self.shape, self.axes)
        dtype = _dtype(self.config.compute_dtype)
        return linear(x.astype(dtype), kernel.astype(dtype), self.num_input_dims)


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
        q = Projection(c, (d, h, hd), ("embed", "heads", "head_dim"), name="q_proj")(x)
        k = Projection(c, (d, kvh, hd), ("embed", "kv_heads", "head_dim"), name="k_proj")(x)
        v = Projection(c, (d, kvh, hd), ("embed", "kv_heads", "head_dim"), name="v_proj")(x)
        q = apply_rotary(q, cos, sin)
        k = apply_rotary(k, cos, sin)

        length = x.shape[1]
        q = q.reshape(q.shape[0], length, kvh, groups, hd)  # [batch, length, kv_heads, groups, head_dim]
        splash = attention_implementation(c) == "splash"
        if isinstance(cache, PagedLayerCache):
            out, cache = paged_attention(q, k, v, query_segment_ids, cache, kernel=splash)
        elif cache is None and splash:
            # Imported here: the Pallas TPU kernels load only when asked for.
            from tulu_jax.models.splash import splash_self_attend

            out = splash_self_attend(q, k, v, query_segment_ids, mesh=traced_mesh(), block_q=c.splash_block_q,
                                     block_kv=c.splash_block_kv)
        elif cache is None:
            out = causal_self_attend(q, k, v, query_segment_ids)
        else:
            def write(cached, new, slot_axis):
                return jax.lax.dynamic_update_slice_in_dim(cached, new.astype(cached.dtype), cache_index, axis=slot_axis)

            # Into the cache layouts of KVCache: keys heads-before-slots, values slots-last.
            cache = {"key": write(cache["key"], k.transpose(0, 2, 1, 3), 2),
                     "value": write(cache["value"], v.transpose(0, 2, 3, 1), 3)}
            query_slots = cache_index + jnp.arange(length)
            if splash:  # read only the slots written so far
                out = attend_filled_cache(q, cache["key"], cache["value"], query_slots, query_segment_ids,
                                          key_segment_ids, filled=cache_index + length)
            else:
                out = attend_cache(q, cache["key"], cache["value"], query_slots, query_segment_ids, key_segment_ids)
        out = out.reshape(x.shape[0], length, h, hd)
        out = Projection(c, (h, hd, d), ("heads", "head_dim", "embed"), num_input_dims=2, name="o_proj")(out)
        return out, cache


class MLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = self.config
        gate = Projection(c, (c.hidden_size, c.intermediate_size), ("embed", "mlp"), name="gate_proj")(x)
        up = Projection(c, (c.hidden_size, c.intermediate_size), ("embed", "mlp"), name="up_proj")(x)
        hidden = nn.with_logical_constraint(jax.nn.silu(gate) * up, ("batch", "length", "act_mlp"))
        return Projection(c, (c.intermediate_size, c.hidden_size), ("mlp", "embed"), name="down_proj")(
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
