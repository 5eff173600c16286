"""Where each tensor of a Hugging Face checkpoint lies, and reading only a rectangle of one.

A multi-host load must never read a whole model on one host: every process asks for the slices its own
devices hold. ``SafetensorsIndex`` parses the headers of ``model.safetensors`` (or of every shard named by
``model.safetensors.index.json``), checks each byte range against its file, and ``read_region`` returns
``tensor[rows, cols]`` by reading just those bytes: one read when the columns span whole rows, else one
read per row on local files (a remote file reads the rows' full width once and slices it).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Optional

import numpy as np
from etils import epath

from data_pipeline.paths import as_path
from tulu_jax.errors import CheckpointError
from tulu_jax.hf.safetensors_io import _DTYPES

MAX_HEADER_BYTES = 100 * 2**20  # safetensors itself refuses headers over 100 MB


@dataclass(frozen=True)
class TensorLocation:
    path: epath.Path
    dtype: np.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offset of the tensor's first element in its file

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _is_local(path: epath.Path) -> bool:
    return "://" not in str(path)


def read_header(path: epath.Path) -> tuple[int, dict]:
    """``(data start offset, header)`` of one safetensors file, checked against the file's size."""
    try:
        size = path.stat().length
        with path.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
            (header_length,) = struct.unpack("<Q", raw)
            if header_length > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(
                    f"{path}: safetensors header claims {header_length} bytes but the file has {size}; "
                    "the file is truncated or not a safetensors file"
                )
            header = json.loads(handle.read(header_length))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    data_start = 8 + header_length
    ranges = []
    for name, entry in header.items():
        try:
            dtype = _DTYPES[entry["dtype"]]
            shape = tuple(int(dim) for dim in entry["shape"])
            begin, end = (int(offset) for offset in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: tensor {name!r} has a malformed header entry {entry!r}") from None
        if end - begin != math.prod(shape) * dtype.itemsize or begin < 0 or data_start + end > size:
            raise CheckpointError(
                f"{path}: tensor {name!r} (shape {list(shape)}, {entry['dtype']}) claims bytes {begin}..{end} of a "
                f"{size - data_start}-byte data section; the file is damaged"
            )
        ranges.append((begin, end, name))
    ranges.sort()
    for (_, end, first), (begin, _, second) in zip(ranges, ranges[1:]):
        if begin < end:
            raise CheckpointError(f"{path}: tensors {first!r} and {second!r} overlap; the file is damaged")
    return data_start, header


class SafetensorsIndex:
    """Every tensor of a HF model directory (local or ``gs://``), located but not read."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = as_path(directory)
        self.tensors: dict[str, TensorLocation] = {}
        for file in self._files():
            data_start, header = read_header(file)
            for name, entry in header.items():
                self.tensors[name] = TensorLocation(
                    file, _DTYPES[entry["dtype"]], tuple(entry["shape"]), data_start + entry["data_offsets"][0]
                )

    def _files(self) -> list[epath.Path]:
        index_path = self.directory / "model.safetensors.index.json"
        if index_path.exists():
            try:
                weight_map = json.loads(index_path.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise CheckpointError(f"{index_path}: not a safetensors index ({error})") from None
            files = []
            for shard in sorted(set(weight_map.values())):
                if not (self.directory / shard).exists():
                    raise CheckpointError(f"{index_path} names shard {shard!r}, which is missing from {self.directory}")
                files.append(self.directory / shard)
            return files
        if (self.directory / "model.safetensors").exists():
            return [self.directory / "model.safetensors"]
        if list(self.directory.glob("*.bin")) or list(self.directory.glob("*.pt")):
            raise CheckpointError(
                f"{self.directory} holds only pickle weights (*.bin/*.pt), which are never loaded; "
                "save the model with safe_serialization=True (safetensors) first"
            )
        raise CheckpointError(f"{self.directory}: no model.safetensors or model.safetensors.index.json found")

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def shape(self, name: str) -> tuple[int, ...]:
        return self.tensors[name].shape

    def read_region(self, name: str, rows: slice, cols: Optional[slice] = None) -> np.ndarray:
        """``tensor[rows]`` of a 1-D tensor or ``tensor[rows, cols]`` of a 2-D one (unit-step slices)."""
        location = self.tensors[name]
        if len(location.shape) == 1:
            (length,), width = location.shape, 1
            cols = slice(0, 1)
        elif len(location.shape) == 2:
            length, width = location.shape
        else:
            raise CheckpointError(f"{location.path}: tensor {name!r} has rank {len(location.shape)}; a Llama has 1 or 2")
        r0, r1, _ = rows.indices(length)
        c0, c1, _ = (cols or slice(None)).indices(width)
        itemsize = location.dtype.itemsize
        row_bytes = width * itemsize
        out = np.empty((r1 - r0, c1 - c0), location.dtype)
        with location.path.open("rb") as handle:
            if (c0, c1) == (0, width):
                handle.seek(location.start + r0 * row_bytes)
                _read_exactly(handle, out.view(np.uint8).reshape(-1), location.path, name)
            elif not _is_local(location.path):
                handle.seek(location.start + r0 * row_bytes)
                block = np.empty((r1 - r0, width), location.dtype)
                _read_exactly(handle, block.view(np.uint8).reshape(-1), location.path, name)
                out[:] = block[:, c0:c1]
            else:
                descriptor = handle.fileno()
                for row in range(r0, r1):
                    offset = location.start + row * row_bytes + c0 * itemsize
                    out[row - r0] = np.frombuffer(os.pread(descriptor, (c1 - c0) * itemsize, offset), location.dtype)
        return out if len(location.shape) == 2 else out[:, 0]


def _read_exactly(handle, buffer: np.ndarray, path: epath.Path, name: str) -> None:
    view = memoryview(buffer)
    done = 0
    while done < len(view):
        count = handle.readinto(view[done:])
        if not count:
            raise CheckpointError(f"{path}: the data of tensor {name!r} ends early; the file is truncated")
        done += count
