"""A fixed pool of KV pages per rollout group, handed out and taken back inside the decode loop.

Pure functions over one group's :class:`PagePool` (the sampler vmaps them over groups). Free pages are a
stack: ``free[:free_count]`` are free, the top is ``free[free_count - 1]``. Page ``scratch`` (the last one)
is never handed out: writes of idle slots and unused table entries point there. A pool of
``slots × pages_per_row`` pages can never run out, so no row waits for memory; the pages a row holds
follow its length, and ``peak`` records the most pages in use at once.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp


class PagePool(NamedTuple):
    free: jnp.ndarray  # [pages] int32: a stack of free page ids
    free_count: jnp.ndarray  # int32
    table: jnp.ndarray  # [slots, pages_per_row] int32: each slot's pages in token order (scratch when unused)
    peak: jnp.ndarray  # int32: the most pages in use at once so far

    @property
    def scratch(self) -> int:
        return self.free.shape[0]


def empty_pool(slots: int, pages_per_row: int) -> PagePool:
    pages = slots * pages_per_row
    return PagePool(jnp.arange(pages, dtype=jnp.int32), jnp.int32(pages),
                    jnp.full((slots, pages_per_row), pages, jnp.int32), jnp.int32(0))


def take(pool: PagePool, slot_ids: jnp.ndarray, first_page: jnp.ndarray, counts: jnp.ndarray) -> PagePool:
    """Give slot ``slot_ids[i]`` ``counts[i]`` new pages at table columns ``first_page[i]`` onwards."""
    starts = jnp.cumsum(counts) - counts  # [n]: each slot's first position below the stack top
    columns = jnp.arange(pool.table.shape[1])  # [pages_per_row]
    index = columns[None, :] - first_page[:, None]  # [n, pages_per_row]: the k-th new page of the slot
    wanted = (index >= 0) & (index < counts[:, None])
    stack_position = pool.free_count - 1 - (starts[:, None] + index)
    pages = jnp.where(wanted, pool.free[jnp.clip(stack_position, 0, pool.scratch - 1)], pool.table[slot_ids])
    free_count = pool.free_count - jnp.sum(counts)
    return pool._replace(table=pool.table.at[slot_ids].set(pages), free_count=free_count,
                         peak=jnp.maximum(pool.peak, pool.scratch - free_count))


def give_back(pool: PagePool, finished: jnp.ndarray, page_counts: jnp.ndarray) -> PagePool:
    """Return the first ``page_counts[s]`` pages of every slot ``s`` with ``finished[s]``; their rows are done."""
    counts = jnp.where(finished, page_counts, 0)  # [slots]
    starts = pool.free_count + jnp.cumsum(counts) - counts
    columns = jnp.arange(pool.table.shape[1])
    returned = columns[None, :] < counts[:, None]  # [slots, pages_per_row]
    position = jnp.where(returned, starts[:, None] + columns[None, :], pool.scratch)  # out of range: dropped
    free = pool.free.at[position].set(pool.table, mode="drop")
    table = jnp.where(finished[:, None], pool.scratch, pool.table)
    return pool._replace(free=free, free_count=pool.free_count + jnp.sum(counts), table=table)
