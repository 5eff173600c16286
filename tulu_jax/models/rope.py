"""Rotary position embeddings with the Llama 3.1 ("llama3") frequency scaling.

The model uses the "rotate half" layout that Hugging Face checkpoints store (q/k projections permuted
relative to Meta's interleaved pairs), so conversion to and from HF needs no permutation.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from tulu_jax.models.config import LlamaConfig


def inverse_frequencies(config: LlamaConfig) -> np.ndarray:
    """Per-pair inverse frequencies ``[head_dim // 2]`` (float32), scaled as the config's rope type says."""
    dim = config.resolved_head_dim
    exponents = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    frequencies = (1.0 / (np.float32(config.rope_theta) ** exponents)).astype(np.float32)
    scaling = config.rope_scaling
    if scaling is None or scaling.rope_type == "default":
        return frequencies
    original = float(scaling.original_max_position_embeddings)
    low_wavelength = original / scaling.low_freq_factor
    high_wavelength = original / scaling.high_freq_factor
    wavelengths = 2.0 * math.pi / frequencies
    smooth = (original / wavelengths - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    blended = (1.0 - smooth) * frequencies / scaling.factor + smooth * frequencies
    scaled = np.where(wavelengths > low_wavelength, frequencies / scaling.factor, frequencies)
    in_between = (wavelengths >= high_wavelength) & (wavelengths <= low_wavelength)
    return np.where(in_between, blended, scaled).astype(np.float32)


def rotary_tables(config: LlamaConfig, positions: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos and sin ``[batch, length, head_dim]`` for integer ``positions`` ``[batch, length]`` (float32)."""
    frequencies = jnp.asarray(inverse_frequencies(config))
    angles = positions.astype(jnp.float32)[..., None] * frequencies  # [batch, length, head_dim // 2]
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rotary(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """Rotate ``x`` ``[batch, length, heads, head_dim]`` by the tables (rotate-half layout)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos = cos[:, :, None, :].astype(x.dtype)
    sin = sin[:, :, None, :].astype(x.dtype)
    return x * cos + rotated * sin
