"""Reference log-probs computed once, stored on disk, reused: DPO trains without a reference model in memory.

Before training, one pass of the frozen reference model over every preference pair gives each example's
summed response log-prob (and response length) for both sides. The result is stored as
``<cache_dir>/<key>.npz`` where ``key`` hashes everything the numbers depend on: the reference model's
identity and config, the data config, the tokenizer files, the maximum length and a fingerprint of the
token rows themselves. A later run with the same inputs finds the file and runs no reference forward.

Arrays are indexed by example index (the row order of ``prepare_data``); batches look them up through the
``example_index`` column the loader carries (see ``tulu_jax.stages.preference_batches``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from etils import epath
from typing import Any, Callable, Mapping, Optional

import numpy as np

from data_pipeline.paths import as_path, is_remote
from tulu_jax.errors import CheckpointError

CACHE_FORMAT = 1
FIELDS = ("chosen_logps", "rejected_logps", "chosen_lengths", "rejected_lengths")
# Token arrays that decide the reference numbers; positions/segment ids follow from them.
FINGERPRINTED_KEYS = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")


def rows_fingerprint(rows: Mapping[str, np.ndarray]) -> str:
    """A hash of the token rows (shapes and contents): ties the cache to this exact row order."""
    digest = hashlib.blake2b(digest_size=16)
    for key in FINGERPRINTED_KEYS:
        array = np.ascontiguousarray(rows[key])
        digest.update(f"{key}:{array.dtype}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def files_fingerprint(path: str | os.PathLike) -> str:
    """A hash of a file's contents, or of every file under a directory (names and contents)."""
    path = as_path(path)
    digest = hashlib.blake2b(digest_size=16)
    files = _files_under(path) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def weights_identity(path: str | os.PathLike) -> dict[str, Any]:
    """Identity of a checkpoint directory without reading its weights: each file's name, size and mtime.

    Hashing hundreds of gigabytes of weights would take longer than the reference pass it saves; a
    rewritten checkpoint changes its files' sizes or modification times, so it gets a new key.
    """
    path = as_path(path)
    path = path if "://" in str(path) else path.absolute()
    if not path.exists():
        raise CheckpointError(f"reference model {path} does not exist")
    files = _files_under(path) if path.is_dir() else [path]

    def identity(file: epath.Path) -> list:
        stat = file.stat()
        return [str(file.relative_to(path) if path.is_dir() else file.name), stat.length, stat.mtime]

    return {"path": str(path), "files": [identity(file) for file in files]}


def _files_under(directory: epath.Path) -> list[epath.Path]:
    """Every file below ``directory``, sorted (epath has no recursive glob on remote storage)."""
    if not is_remote(directory):
        return sorted(epath.Path(root) / name for root, _, names in directory.walk() for name in names)
    # epath's fsspec walk (gs://…) yields its roots without the scheme ("bucket/run/hf"): put them back under
    # ``directory``, or every file would read as a local path.
    top = str(directory).split("://", 1)[1].rstrip("/")
    return sorted(directory / str(root)[len(top):].lstrip("/") / name
                  for root, _, names in directory.walk() for name in names)


def cache_key(
    *,
    reference_identity: Mapping[str, Any],
    model_config: Mapping[str, Any],
    data_config: Mapping[str, Any],
    tokenizer_fingerprint: str,
    max_seq_len: int,
    rows_fingerprint: str,
) -> str:
    """The hex key of one cached set of reference log-probs (sha256 of the canonical JSON of the inputs)."""
    description = {
        "format": CACHE_FORMAT,
        "reference": reference_identity,
        "model": model_config,
        "data": data_config,
        "tokenizer": tokenizer_fingerprint,
        "max_seq_len": max_seq_len,
        "rows": rows_fingerprint,
    }
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class ReferenceLogps:
    """Per-example reference numbers, ``[examples]`` float32 each, indexed by example index."""

    chosen_logps: np.ndarray
    rejected_logps: np.ndarray
    chosen_lengths: np.ndarray
    rejected_lengths: np.ndarray

    def __len__(self) -> int:
        return len(self.chosen_logps)

    def lookup(self, example_indices: np.ndarray) -> dict[str, np.ndarray]:
        """The batch keys ``reference_chosen_logps`` / ``reference_rejected_logps`` for these examples."""
        indices = np.asarray(example_indices, dtype=np.int64)
        return {
            "reference_chosen_logps": self.chosen_logps[indices],
            "reference_rejected_logps": self.rejected_logps[indices],
        }

    @classmethod
    def zeros(cls, count: int) -> "ReferenceLogps":
        """Placeholders for objectives without a reference (SimPO)."""
        zero = np.zeros(count, np.float32)
        return cls(zero, zero, zero, zero)


class ReferenceCache:
    """A directory of ``<key>.npz`` files of reference log-probs."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = as_path(directory)

    def path(self, key: str) -> epath.Path:
        return self.directory / f"{key}.npz"

    def load(self, key: str, expected_examples: int) -> Optional[ReferenceLogps]:
        """The cached numbers for ``key``, or None when absent or unreadable (then they are recomputed)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with path.open("rb") as handle, np.load(handle) as stored:
                values = ReferenceLogps(*(np.asarray(stored[field], np.float32) for field in FIELDS))
        except (OSError, KeyError, ValueError, EOFError):
            return None
        if len(values) != expected_examples:
            return None
        return values

    def save(self, key: str, values: ReferenceLogps) -> epath.Path:
        """Write atomically (temporary file, then rename), so a killed run never leaves a torn cache file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(key)
        temporary = self.directory / f"{key}.tmp{os.getpid()}.npz"
        with temporary.open("wb") as sink:
            np.savez(sink, **{field: getattr(values, field) for field in FIELDS})
        temporary.replace(path)
        return path


def compute_reference_logps(
    logps_fn: Callable[[dict[str, np.ndarray]], Mapping[str, Any]],
    rows: Mapping[str, np.ndarray],
    keys: tuple[str, ...],
    batch_size: int,
) -> ReferenceLogps:
    """Run ``logps_fn`` over every row in order, ``batch_size`` pairs at a time.

    ``logps_fn(batch)`` returns ``{chosen_logps, rejected_logps, chosen_lengths, rejected_lengths}`` of shape
    ``[batch_size]``. The last batch is filled up with copies of row 0 (and those results dropped), so one
    compiled shape serves the whole pass.
    """
    count = len(rows[keys[0]])
    collected: dict[str, list[np.ndarray]] = {field: [] for field in FIELDS}
    for start in range(0, count, batch_size):
        indices = np.arange(start, start + batch_size)
        real = int(np.sum(indices < count))
        indices = np.where(indices < count, indices, 0)
        batch = {key: np.asarray(rows[key])[indices] for key in keys}
        result = logps_fn(batch)
        for field in FIELDS:
            collected[field].append(np.asarray(result[field], np.float32)[:real])
    return ReferenceLogps(*(np.concatenate(collected[field]) for field in FIELDS))


def load_or_compute(
    cache: ReferenceCache, key: str, expected_examples: int, compute: Callable[[], ReferenceLogps], write: bool = True,
    agree: Callable[[bool], bool] = lambda hit: hit,
) -> tuple[ReferenceLogps, bool]:
    """``(values, hit)``: the cached values for ``key``, or ``compute()`` saved under it (when ``write``).

    ``agree(found)`` turns this process's finding into the run's one decision (process 0's, on every
    process): a reference pass runs collectives, so every process must take the same branch.
    """
    cached = cache.load(key, expected_examples)
    if agree(cached is not None):
        if cached is None:
            raise CheckpointError(
                f"process 0 found the reference cache {cache.path(key)} but this process cannot read it; "
                "put dpo.reference_cache_dir (default: under output_dir) on storage every host shares"
            )
        return cached, True
    values = compute()
    if write:
        cache.save(key, values)
    return values, False
