"""Read records lazily from JSONL (plain or gzip), Parquet, a HF ``save_to_disk`` directory, or TFDS.

Every record comes with its ``Origin`` (file and line or row) so later errors can say where to look.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from data_pipeline.config import SourceConfig
from data_pipeline.errors import DataError
from data_pipeline.paths import as_path, is_remote


@dataclass(frozen=True)
class Origin:
    """Where a record was read: ``train.jsonl line 12`` or ``part-0.parquet row 7`` (1-based)."""

    path: str
    index: int
    unit: str = "line"  # "line" for text files, "row" for tables

    def __str__(self) -> str:
        return f"{self.path} {self.unit} {self.index}"


@dataclass(frozen=True)
class Record:
    data: dict[str, Any]
    origin: Origin


def detect_format(path: Path) -> str:
    """The source format implied by a path's name or layout."""
    name = path.name.lower()
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return "hf_disk"
        if any(path.glob("*.parquet")):
            return "parquet"
        if any(path.glob("*.jsonl")) or any(path.glob("*.jsonl.gz")):
            return "jsonl"
        raise DataError(
            f"{path}: cannot tell the format of this directory (no state.json, *.parquet or *.jsonl); "
            "set the source's format to jsonl, parquet, hf_disk or tfds"
        )
    if name.endswith((".jsonl", ".jsonl.gz", ".json", ".json.gz")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    raise DataError(f"{path}: unknown file type; set the source's format to jsonl, parquet, hf_disk or tfds")


def read_source(source: SourceConfig) -> Iterator[Record]:
    """Yield the records of one source in file order."""
    if source.format == "tfds":
        yield from read_tfds(source.path, source.split)
        return
    path = as_path(source.path)
    if not path.exists():
        raise DataError(f"data source not found: {path}")
    fmt = detect_format(path) if source.format == "auto" else source.format
    if fmt == "jsonl":
        files = [path] if path.is_file() else sorted([*path.glob("*.jsonl"), *path.glob("*.jsonl.gz")])
        for file in files:
            yield from read_jsonl(file)
    elif fmt == "parquet":
        files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
        for file in files:
            yield from read_parquet(file)
    elif fmt == "hf_disk":
        yield from read_hf_disk(path, source.split)
    else:
        raise DataError(f"{path}: unsupported format {fmt!r}")


def read_jsonl(path: Path) -> Iterator[Record]:
    """One JSON object per line; blank lines are ignored; a broken line is an error naming the line.

    Lines are read as bytes and decoded one by one, so bytes that are not UTF-8 and a truncated or corrupt
    gzip stream are errors naming the file and line rather than a traceback from the codec."""
    with path.open("rb") as raw_handle, (
        gzip.GzipFile(fileobj=raw_handle) if path.name.endswith(".gz") else contextlib.nullcontext(raw_handle)
    ) as handle:
        for line_number, raw in _numbered_lines(handle, path):
            origin = Origin(str(path), line_number, "line")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(
                    f"{origin}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
                    "save the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{origin}: not valid JSON ({error.msg} at column {error.colno}); "
                    "the line may be truncated — each line must hold one complete JSON object"
                ) from None
            if not isinstance(data, dict):
                raise DataError(f"{origin}: expected a JSON object, got {type(data).__name__}")
            yield Record(data, origin)


def _numbered_lines(handle, path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, bytes)``; a damaged gzip stream becomes a DataError naming the line it broke at."""
    line_number = 0
    while True:
        try:
            raw = handle.readline()
        except (EOFError, OSError, zlib.error) as error:
            raise DataError(
                f"{path} line {line_number + 1}: the gzip stream is truncated or corrupt ({error}); "
                "the file was cut short or damaged — copy or compress it again"
            ) from None
        if not raw:
            return
        line_number += 1
        yield line_number, raw


def _iter_table_rows(table_batches, path: str) -> Iterator[Record]:
    row = 0
    for batch in table_batches:
        for data in batch.to_pylist():
            row += 1
            yield Record(data, Origin(path, row, "row"))


def read_parquet(path: Path) -> Iterator[Record]:
    """Rows of a Parquet file, read one row group at a time."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path.open("rb") if is_remote(path) else str(path))
    except Exception as error:  # pyarrow raises several types for unreadable files
        raise DataError(f"{path}: not a readable Parquet file ({error})") from None
    yield from _iter_table_rows(parquet.iter_batches(batch_size=1024), str(path))


def read_hf_disk(path: Path, split: str) -> Iterator[Record]:
    """Rows of a ``datasets`` ``save_to_disk`` directory, read from its Arrow streaming files with pyarrow.

    A ``Dataset`` directory holds ``state.json`` (listing ``_data_files``), ``dataset_info.json`` and
    ``data-XXXXX-of-YYYYY.arrow``; a ``DatasetDict`` holds ``dataset_dict.json`` and one such directory per split.
    """
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        if split not in splits:
            raise DataError(f"{path}: no split {split!r}; the splits are {', '.join(splits)}")
        path = path / split
    state_file = path / "state.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        files = [path / entry["filename"] for entry in state.get("_data_files", [])]
    else:
        files = sorted(path.glob("data-*.arrow"))
    if not files:
        raise DataError(f"{path}: no Arrow data files (expected data-*.arrow listed in state.json)")
    for file in files:
        if not file.is_file():
            raise DataError(f"{path}: state.json lists {file.name}, which is missing")
        yield from _read_arrow_stream(file)


def _read_arrow_stream(file: Path) -> Iterator[Record]:
    import pyarrow as pa

    with (pa.BufferReader(file.read_bytes()) if is_remote(file) else pa.memory_map(str(file), "r")) as source:
        try:
            reader = pa.ipc.open_stream(source)
        except pa.ArrowInvalid:
            source.seek(0)
            reader = pa.ipc.open_file(source)  # older writers used the file format
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
            yield from _iter_table_rows(batches, str(file))
            return
        yield from _iter_table_rows(reader, str(file))


def read_tfds(spec: str, split: str) -> Iterator[Record]:
    """Records of a prepared TFDS dataset through ``tfds.data_source`` (random access, no TensorFlow graph).

    ``spec`` is ``name[:version]@data_dir``, e.g. ``my_sft:1.0.0@/data/tfds``; the dataset must already be
    prepared in ``data_dir`` with the ``array_record`` file format (nothing is downloaded).
    """
    import tensorflow_datasets as tfds

    name, _, data_dir = spec.partition("@")
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
    except Exception as error:  # tfds raises many kinds for a missing or unprepared dataset
        raise DataError(f"tfds dataset {spec!r} split {split!r} could not be opened: {error}") from None
    origin_path = f"tfds:{name}/{split}"
    for row in range(len(source)):
        yield Record(_decode_tfds(source[row]), Origin(origin_path, row + 1, "row"))


def _decode_tfds(value: Any) -> Any:
    """TFDS hands back bytes for text and numpy arrays for sequences; turn them into JSON-like values."""
    import numpy as np

    if isinstance(value, dict):
        return {key: _decode_tfds(item) for key, item in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind in "SU":
            return [_decode_tfds(item) for item in value.tolist()]
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_decode_tfds(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
