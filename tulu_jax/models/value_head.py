"""Llama with a scalar head: the reward model (score at the last real token) and the PPO value model
(a value per token). Parameters: ``{"model": <Llama trunk, no lm_head>, "score": {"kernel": [embed]}}``.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from tulu_jax.models.config import LlamaConfig
from tulu_jax.models.layers import _param
from tulu_jax.models.llama import Llama


class LlamaScalarHead(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jnp.ndarray,  # [batch, length]
        positions: Optional[jnp.ndarray] = None,
        segment_ids: Optional[jnp.ndarray] = None,
    ) -> jnp.ndarray:
        """A float32 scalar per token ``[batch, length]``."""
        hidden = Llama(self.config, with_lm_head=False, name="model")(
            input_ids, positions=positions, segment_ids=segment_ids, return_hidden=True
        )
        return _ScoreHead(self.config, name="score")(hidden)


class _ScoreHead(nn.Module):
    """``{"kernel": [embed]}``, zero at init so a fresh head scores every sequence 0."""

    config: LlamaConfig

    @nn.compact
    def __call__(self, hidden: jnp.ndarray) -> jnp.ndarray:
        kernel = _param(self, "kernel", (self.config.hidden_size,), ("embed",), nn.initializers.zeros)
        return jnp.einsum("bld,d->bl", hidden.astype(jnp.float32), kernel.astype(jnp.float32))


def scalar_head_params_from_lm(lm_params: dict, score: Optional[jnp.ndarray] = None) -> dict:
    """Scalar-head params from a language model's params (its lm_head dropped; score zero unless given)."""
    trunk = {key: value for key, value in lm_params.items() if key != "lm_head"}
    hidden_size = trunk["embed_tokens"]["embedding"].shape[1]
    kernel = jnp.zeros((hidden_size,), trunk["embed_tokens"]["embedding"].dtype) if score is None else score
    return {"model": trunk, "score": {"kernel": kernel}}


def init_scalar_head_params(config: LlamaConfig, rng: jax.Array) -> dict:
    dummy = jnp.zeros((1, 1), jnp.int32)
    return nn.unbox(LlamaScalarHead(config).init(rng, dummy)["params"])


def scalar_head_logical_axes(config: LlamaConfig) -> dict:
    dummy = jnp.zeros((1, 1), jnp.int32)
    return nn.get_partition_spec(jax.eval_shape(lambda: LlamaScalarHead(config).init(jax.random.PRNGKey(0), dummy)["params"]))
