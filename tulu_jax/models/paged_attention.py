"""Keys and values in fixed-size pages, addressed by a page table (the continuous-batching sampler's cache).

One layer's pages are ``[pages, page_size, 2 * kv_heads, head_dim]`` with keys at the even and values at
the odd combined heads: the layout of JAX's ragged paged attention TPU kernel. Row ``r``'s token ``t`` sits
in page ``page_table[r, t // page_size]`` at offset ``t % page_size``; the pages a row does not use belong to
other rows, or are free. A row's tokens are at positions ``0 .. kv_length - 1`` with no padding, so
attention needs no segment ids: token ``t`` sees tokens ``<= t`` of its own row.

``PagedLayerCache`` is what one attention layer receives: the pages, where this call's new keys and values
go (``write_pages`` / ``write_offsets``, one per new token; writes of idle rows go to a scratch page), and
the page table with each row's length after the write. Prefill (``prefill=True``) attends within the new
tokens, which are the whole row; decoding (one token a row) reads the row's pages.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from tulu_jax.models.attention import MASK_VALUE, causal_self_attend


class PagedLayerCache(NamedTuple):
    pages: jnp.ndarray  # [pages, page_size, 2 * kv_heads, head_dim]
    page_table: jnp.ndarray  # [rows, pages_per_row] int32
    write_pages: jnp.ndarray  # [rows, length] int32: the page of each new token
    write_offsets: jnp.ndarray  # [rows, length] int32: its offset in that page
    kv_lengths: jnp.ndarray  # [rows] int32: tokens in the row's pages once this call's are written
    prefill: bool = False


def write_pages(pages: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, cache: PagedLayerCache) -> jnp.ndarray:
    """``pages`` with this call's keys and values ``[rows, length, kv_heads, head_dim]`` in their slots."""
    rows, length, kv_heads, head_dim = k.shape
    combined = jnp.stack([k, v], axis=3).reshape(rows, length, 2 * kv_heads, head_dim)  # k, v interleaved
    return pages.at[cache.write_pages, cache.write_offsets].set(combined.astype(pages.dtype))


def attend_pages(q: jnp.ndarray, pages: jnp.ndarray, page_table: jnp.ndarray, kv_lengths: jnp.ndarray) -> jnp.ndarray:
    """One query token per row (the row's newest, at position ``kv_length - 1``) over the row's pages.

    ``q [rows, 1, kv_heads, groups, head_dim]`` -> ``[rows, 1, kv_heads, groups, head_dim]``. The XLA path:
    it gathers each row's pages in table order; slots at or past ``kv_length`` are masked.
    """
    rows, _, kv_heads, groups, head_dim = q.shape
    page_size = pages.shape[1]
    gathered = pages[page_table]  # [rows, pages_per_row, page_size, 2 * kv_heads, head_dim]
    gathered = gathered.reshape(rows, -1, kv_heads, 2, head_dim).astype(q.dtype)
    keys, values = gathered[:, :, :, 0], gathered[:, :, :, 1]  # [rows, slots, kv_heads, head_dim]
    scores = jnp.einsum("rkgd,rskd->rkgs", q[:, 0], keys, preferred_element_type=jnp.float32) * head_dim**-0.5
    visible = jnp.arange(page_table.shape[1] * page_size)[None, :] < kv_lengths[:, None]  # [rows, slots]
    scores = jnp.where(visible[:, None, None], scores, MASK_VALUE)
    weights = jax.nn.softmax(scores, axis=-1).astype(q.dtype)
    out = jnp.einsum("rkgs,rskd->rkgd", weights, values, preferred_element_type=jnp.float32)
    return out.astype(q.dtype)[:, None]


def paged_attention(q, k, v, segment_ids, cache: PagedLayerCache) -> tuple[jnp.ndarray, PagedLayerCache]:
    """Write this call's keys/values into the pages, then attend: the whole new rows in prefill, else the pages."""
    pages = write_pages(cache.pages, k, v, cache)
    cache = cache._replace(pages=pages)
    if cache.prefill:
        return causal_self_attend(q, k, v, segment_ids), cache
    return attend_pages(q, pages, cache.page_table, cache.kv_lengths), cache
