"""Keys and values in fixed-size pages, addressed by a page table (the continuous-batching sampler's cache).

One layer's pages are ``[pages, 2 * kv_heads, page_size, head_dim]`` with keys at the even and values at
the odd combined heads (heads before tokens, as in the static cache: on TPU the token and head_dim dims
then tile the same way for the write and the read, where a tokens-before-heads pool was copied into
another layout twice per layer and step). Row ``r``'s token ``t`` sits
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

# Page-table columns a decode step gathers at a time (64 pages of 16 tokens: 1,024 key slots). Fewer blocks
# cost less on CPU, where each loop trip has a fixed price; more read less of a long row's unwritten tail.
PAGES_PER_BLOCK = 64


class PagedLayerCache(NamedTuple):
    pages: jnp.ndarray  # [pages, 2 * kv_heads, page_size, head_dim]
    page_table: jnp.ndarray  # [rows, pages_per_row] int32
    write_pages: jnp.ndarray  # [rows, length] int32: the page of each new token
    write_offsets: jnp.ndarray  # [rows, length] int32: its offset in that page
    kv_lengths: jnp.ndarray  # [rows] int32: tokens in the row's pages once this call's are written
    prefill: bool = False


def write_pages(pages: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, cache: PagedLayerCache) -> jnp.ndarray:
    """``pages`` with this call's keys and values ``[rows, length, kv_heads, head_dim]`` in their slots."""
    rows, length, kv_heads, head_dim = k.shape
    combined = jnp.stack([k, v], axis=3).reshape(rows, length, 2 * kv_heads, head_dim)  # k, v interleaved
    return pages.at[cache.write_pages, :, cache.write_offsets].set(combined.astype(pages.dtype))


def attend_pages(q: jnp.ndarray, pages: jnp.ndarray, page_table: jnp.ndarray, kv_lengths: jnp.ndarray,
                 block_pages: int = PAGES_PER_BLOCK) -> jnp.ndarray:
    """One query token per row (the row's newest, at position ``kv_length - 1``) over the row's pages.

    ``q [rows, 1, kv_heads, groups, head_dim]`` -> ``[rows, 1, kv_heads, groups, head_dim]``. The XLA path:
    it walks the page table in blocks of ``block_pages`` columns, only as far as the longest row has
    written, gathering each block's pages and keeping a running float32 softmax (row max, row sum and
    weighted values rescaled as each block arrives); slots at or past a row's ``kv_length`` are masked.
    """
    rows, _, kv_heads, groups, head_dim = q.shape
    page_size, pages_per_row = pages.shape[2], page_table.shape[1]
    block_pages = min(block_pages, pages_per_row)
    block_slots = block_pages * page_size
    query = q[:, 0]  # [rows, kv_heads, groups, head_dim]

    def one_block(index, carry):
        row_max, row_sum, weighted = carry
        # The last block may run past the table: its start is clamped and columns already counted are masked.
        first = index * block_pages
        start = jnp.minimum(first, pages_per_row - block_pages)
        columns = jax.lax.dynamic_slice_in_dim(page_table, start, block_pages, axis=1)  # [rows, block_pages]
        block = pages[columns].astype(q.dtype)  # [rows, block_pages, 2 * kv_heads, page_size, head_dim]
        keys, values = block[:, :, 0::2], block[:, :, 1::2]  # [rows, block_pages, kv_heads, page_size, head_dim]
        scores = jnp.einsum("rkgd,rbkpd->rkgbp", query, keys, preferred_element_type=jnp.float32)
        scores = scores.reshape(rows, kv_heads, groups, block_slots) * head_dim**-0.5
        slots = start * page_size + jnp.arange(block_slots)
        visible = (slots[None, :] < kv_lengths[:, None]) & (slots >= first * page_size)[None, :]  # [rows, slots]
        scores = jnp.where(visible[:, None, None], scores, MASK_VALUE)
        new_max = jnp.maximum(row_max, scores.max(axis=-1))
        correction = jnp.exp(row_max - new_max)
        probabilities = jnp.exp(scores - new_max[..., None])
        row_sum = row_sum * correction + probabilities.sum(axis=-1)
        probabilities_by_page = probabilities.reshape(rows, kv_heads, groups, block_pages, page_size)
        update = jnp.einsum("rkgbp,rbkpd->rkgd", probabilities_by_page.astype(q.dtype), values,
                            preferred_element_type=jnp.float32)
        return new_max, row_sum, weighted * correction[..., None] + update

    carry = (jnp.full((rows, kv_heads, groups), -jnp.inf, jnp.float32),
             jnp.zeros((rows, kv_heads, groups), jnp.float32),
             jnp.zeros((rows, kv_heads, groups, head_dim), jnp.float32))
    blocks = (jnp.max(kv_lengths) + block_slots - 1) // block_slots
    _, row_sum, weighted = jax.lax.fori_loop(0, blocks, one_block, carry)
    return (weighted / row_sum[..., None]).astype(q.dtype)[:, None]


def paged_attention(q, k, v, segment_ids, cache: PagedLayerCache,
                    kernel: bool = False) -> tuple[jnp.ndarray, PagedLayerCache]:
    """Write this call's keys/values into the pages, then attend: the whole new rows in prefill, else the pages
    (``kernel``: by the Pallas decode kernel, which reads the pages in place; else the XLA path)."""
    pages = write_pages(cache.pages, k, v, cache)
    cache = cache._replace(pages=pages)
    if cache.prefill:
        return causal_self_attend(q, k, v, segment_ids), cache
    if kernel:
        # Imported here: the Pallas TPU kernels load only when asked for.
        from tulu_jax.models.paged_attention_kernel import attend_pages_over_heads

        return attend_pages_over_heads(q, pages, cache.page_table, cache.kv_lengths), cache
    return attend_pages(q, pages, cache.page_table, cache.kv_lengths), cache
