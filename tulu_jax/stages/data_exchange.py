"""Tokenization divided among a run's processes: the parts meet in ``output_dir``, shared by every host."""

from __future__ import annotations

import uuid

import jax
from etils import epath

from data_pipeline.paths import as_path
from data_pipeline.work_share import WorkShare
from tulu_jax import distributed


def data_work_share(output_dir: str) -> WorkShare:
    """Tokenization divided among this run's processes; the parts meet in ``output_dir`` (shared by all hosts,
    like checkpoints), written by each process and read by all between two barriers."""
    if jax.process_count() == 1:
        return WorkShare()
    folder = as_path(output_dir) / f".data-exchange-{distributed.agreed('data exchange', uuid.uuid4().hex[:12])}"

    def exchange(name: str, payload: bytes) -> list[bytes]:
        parts_dir = folder / name  # one folder per exchange, removed once every process has read it
        parts_dir.mkdir(parents=True, exist_ok=True)
        (parts_dir / f"{jax.process_index()}.npz").write_bytes(payload)
        distributed.barrier(f"data {name} written")
        parts = [(parts_dir / f"{index}.npz").read_bytes() for index in range(jax.process_count())]
        distributed.barrier(f"data {name} read")
        if jax.process_index() == 0:
            parts_dir.rmtree()
            _remove_if_empty(folder)
        # Without this, a peer's next exchange may create its folder while process 0 removes the parent.
        distributed.barrier(f"data {name} removed")
        return parts

    return WorkShare(jax.process_index(), jax.process_count(), exchange)


def _remove_if_empty(folder: epath.Path) -> None:
    """Remove ``folder`` when nothing is left in it. On an object store (gs://) a folder exists only while it
    holds objects, so the last removal may already have taken it away."""
    try:
        if not any(folder.iterdir()):
            folder.rmdir()
    except FileNotFoundError:
        pass
