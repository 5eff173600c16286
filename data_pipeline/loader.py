"""A grain loader over token rows: seeded per-epoch shuffle, per-process shards, per-process batches,
and an iterator state that restores exactly (``get_state``/``set_state``, JSON-able).

Global sample k of the stream is row ``shuffle_epoch_e(k mod used)`` of epoch ``e = k // used``, where
``used`` is the epoch length rounded down to whole global batches (the few rows left over differ from
epoch to epoch). Process p takes samples ``k ≡ p (mod process_count)``, so the global batch at a step is
the same whatever the process count, and process p only ever reads its own rows.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Mapping, Optional, Sequence

import grain
import numpy as np

from data_pipeline.errors import DataError


class _RowSource:
    """Random access to row i of a dict of equally long arrays (or a list of records)."""

    def __init__(self, rows: Mapping[str, np.ndarray] | Sequence[Any]):
        self._rows = rows
        if isinstance(rows, Mapping):
            lengths = {len(array) for array in rows.values()}
            if len(lengths) != 1:
                raise ValueError(f"row arrays differ in length: {sorted(lengths)}")
            self._length = lengths.pop()
        else:
            self._length = len(rows)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int):
        if isinstance(self._rows, Mapping):
            return {key: array[index] for key, array in self._rows.items()}
        return self._rows[index]


class BatchLoader:
    """Iterates per-process batches (dicts of numpy arrays ``[batch_size, ...]``) for ``num_epochs`` epochs
    (None: forever)."""

    def __init__(
        self,
        rows: Mapping[str, np.ndarray] | Sequence[Any],
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        process_index: int = 0,
        process_count: int = 1,
        num_epochs: Optional[int] = None,
        batch_fn: Optional[Callable[[Sequence[Any]], Any]] = None,
        prefetch: int = 2,
    ):
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
        source = _RowSource(rows)
        self.num_rows = len(source)
        self.batch_size, self.process_index, self.process_count = batch_size, process_index, process_count
        self.seed, self.shuffle, self.num_epochs = seed, shuffle, num_epochs
        global_batch = batch_size * process_count
        self.steps_per_epoch = self.num_rows // global_batch
        if self.steps_per_epoch == 0:
            raise DataError(
                f"{self.num_rows} rows do not fill one global batch of {global_batch} "
                f"({batch_size} per process × {process_count} processes); lower the batch size or add data"
            )
        used = self.steps_per_epoch * global_batch
        epoch_rows = grain.MapDataset.source(source)
        if shuffle:
            epoch_rows = epoch_rows.shuffle(seed)  # index e*N + i is row i of epoch e's permutation
        total = sys.maxsize if num_epochs is None else num_epochs * used
        num_rows = self.num_rows

        def take(sample: int):
            epoch, position = divmod(sample, used)
            return epoch_rows[epoch * num_rows + position] if shuffle else epoch_rows[position]

        stream = grain.MapDataset.range(total).map(take)
        self._dataset = stream[process_index::process_count].batch(batch_size, drop_remainder=True, batch_fn=batch_fn)
        self._read_options = grain.ReadOptions(num_threads=1, prefetch_buffer_size=prefetch)
        self._iterator = self._dataset.to_iter_dataset(self._read_options).__iter__()

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._iterator)

    @property
    def step(self) -> int:
        """Number of batches handed out so far (the index of the next one)."""
        return int(self._iterator.get_state()["next_index"])

    def _fingerprint(self) -> dict[str, Any]:
        return {"num_rows": self.num_rows, "global_batch_size": self.batch_size * self.process_count,
                "seed": self.seed, "shuffle": self.shuffle}

    def get_state(self) -> dict[str, Any]:
        """A JSON-able state; ``set_state`` on a loader over the same rows resumes at the next batch."""
        return {"step": self.step, **self._fingerprint()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        expected = self._fingerprint()
        differing = {key: (state.get(key), value) for key, value in expected.items() if state.get(key) != value}
        if differing:
            details = ", ".join(f"{key}: saved {saved!r}, now {now!r}" for key, (saved, now) in differing.items())
            raise DataError(f"the saved data-loader state does not match this data ({details})")
        self._iterator.set_state({"next_index": int(state["step"])})


def make_global_batch(batch: Mapping[str, np.ndarray], sharding) -> dict[str, Any]:
    """Assemble global ``jax.Array``s from each process's local batch rows (batch axis sharded by ``sharding``)."""
    import jax

    return {
        key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for key, value in batch.items()
        if isinstance(value, np.ndarray) and value.dtype != object
    }
