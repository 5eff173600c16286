"""Tokenization divided among the processes of a multi-host run, so per-host data work falls as 1/P.

Each process encodes one contiguous block of the records (block ``index`` of ``count``), and the blocks meet
through ``exchange``: a callable given by the caller (the data pipeline knows nothing of JAX) that takes
this process's payload and returns every process's payload in index order. Every process then holds the
same encoded examples in the original record order, packs them the same way, and feeds its own rows.

Payloads are plain bytes (NumPy ``.npz`` of int32 arrays and counts): nothing is pickled.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from data_pipeline.examples import TokenizedExample

Exchange = Callable[[str, bytes], list[bytes]]


@dataclass(frozen=True)
class WorkShare:
    """This process's part of the data work; the default is a lone process doing all of it."""

    index: int = 0
    count: int = 1
    exchange: Optional[Exchange] = None  # (name, this process's bytes) -> every process's bytes, by index

    def block(self, total: int) -> range:
        """The record positions this process encodes."""
        return range(total * self.index // self.count, total * (self.index + 1) // self.count)


def _parts(result: Any) -> tuple[str, list[np.ndarray]]:
    if isinstance(result, TokenizedExample):
        return "example", [result.input_ids, result.labels]
    if isinstance(result, tuple):
        return "pair", [result[0].input_ids, result[0].labels, result[1].input_ids, result[1].labels]
    return "ids", [np.asarray(result)]


def _from_parts(kind: str, arrays: list[np.ndarray]) -> Any:
    if kind == "example":
        return TokenizedExample(*arrays)
    if kind == "pair":
        return TokenizedExample(arrays[0], arrays[1]), TokenizedExample(arrays[2], arrays[3])
    return arrays[0]


def encode_payload(kept: list[tuple[int, Any]], dropped: Counter, truncated: int) -> bytes:
    """``kept``: (record position, encoded result) pairs of this process; with its drop and truncation counts."""
    kinds = sorted({_parts(result)[0] for _, result in kept})
    arrays = [array for _, result in kept for array in _parts(result)[1]]
    lengths = np.asarray([len(array) for array in arrays], np.int64)
    data = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, np.int32)
    meta = {"kind": kinds[0] if kinds else "none", "dropped": dict(dropped), "truncated": truncated}
    sink = io.BytesIO()
    np.savez(sink, positions=np.asarray([position for position, _ in kept], np.int64), lengths=lengths, data=data,
             meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return sink.getvalue()


def decode_payload(payload: bytes) -> tuple[list[tuple[int, Any]], Counter, int]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as stored:
        positions, lengths, data = stored["positions"], stored["lengths"], stored["data"]
        meta = json.loads(stored["meta"].tobytes().decode())
    if meta["kind"] == "none":
        return [], Counter(meta["dropped"]), meta["truncated"]
    per_result = {"example": 2, "pair": 4, "ids": 1}[meta["kind"]]
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    arrays = [data[bounds[i]:bounds[i + 1]] for i in range(len(lengths))]
    kept = [(int(position), _from_parts(meta["kind"], arrays[i * per_result:(i + 1) * per_result]))
            for i, position in enumerate(positions)]
    return kept, Counter(meta["dropped"]), meta["truncated"]
