"""Mix sources by amount: a fraction (above 1.0 upsamples), an absolute count, or everything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

import numpy as np

from data_pipeline.config import SourceConfig
from data_pipeline.errors import DataError

T = TypeVar("T")


@dataclass(frozen=True)
class MixtureLine:
    name: str
    available: int
    amount: object
    taken: int


def target_count(amount: int | float | None, available: int) -> int:
    """How many records an amount asks for: None → all, float f → round(f·available), int n → n."""
    if amount is None:
        return available
    if isinstance(amount, float):
        return int(round(amount * available))
    return int(amount)


def sample_indices(available: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into ``available`` records: whole repeats of all of them plus a seeded sample
    (without replacement) of the remainder. Deterministic for a generator state."""
    if available == 0:
        return np.zeros(0, dtype=np.int64)
    repeats, remainder = divmod(count, available)
    whole = np.tile(np.arange(available, dtype=np.int64), repeats)
    rest = np.sort(rng.choice(available, size=remainder, replace=False)) if remainder else whole[:0]
    return np.concatenate([whole, rest])


def mix(
    sources: Sequence[SourceConfig], load: Callable[[SourceConfig], list[T]], seed: int
) -> tuple[list[T], list[MixtureLine]]:
    """Load each source, take its amount, and return the records (source order) and a table of what was taken.

    Each source draws from its own generator seeded by (seed, source position), so changing one source's
    amount does not change what is sampled from the others.
    """
    if not sources:
        raise DataError("data.sources is empty: list at least one dataset (path, and optionally amount)")
    mixed: list[T] = []
    table = []
    for position, source in enumerate(sources):
        records = load(source)
        count = target_count(source.amount, len(records))
        if count > 0 and not records:
            raise DataError(f"data source {source.display_name} has no usable records")
        rng = np.random.default_rng([seed, position])
        indices = sample_indices(len(records), count, rng)
        mixed.extend(records[i] for i in indices)
        table.append(MixtureLine(source.display_name, len(records), source.amount, len(indices)))
    return mixed, table


def format_mixture_table(table: Sequence[MixtureLine]) -> str:
    """A plain-text table: source, records available, amount asked, records taken."""
    header = ("source", "available", "amount", "taken")
    rows = [(line.name, str(line.available), "all" if line.amount is None else repr(line.amount), str(line.taken))
            for line in table]
    rows.append(("total", str(sum(l.available for l in table)), "", str(sum(l.taken for l in table))))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in [header, *rows]]
    return "\n".join(lines)
