"""Read prompts from JSONL (plain or gzip) and Parquet files, one ``(line, prompt)`` at a time.

A record's prompt is its user turns (``messages``: the ``content`` of every ``role == "user"``
turn, joined by newlines) or a plain text field (``prompt`` for IFEval, ``question`` for GSM8K,
``problem`` for MATH, ``instruction``). With ``field="auto"`` the first of ``PROMPT_FIELDS``
present in the record is used. Lines are numbered from 1 (Parquet: rows from 1).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator

from data_pipeline.errors import DataError

PROMPT_FIELDS = ("messages", "prompt", "question", "problem", "instruction")
AUTO = "auto"
_PARQUET_BATCH_ROWS = 4096


def is_parquet(path: str | Path) -> bool:
    return str(path).endswith(".parquet")


def is_gzip(path: str | Path) -> bool:
    return str(path).endswith(".gz")


def iter_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Every record of a JSONL / JSONL.gz / Parquet file with its 1-based line (or row) number."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; pass JSONL (.jsonl, .jsonl.gz) or Parquet files")
    if is_parquet(path):
        yield from _iter_parquet(path)
    else:
        yield from _iter_jsonl(path)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    opener = gzip.open if is_gzip(path) else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield line_number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(
                        f"{path}:{line_number}: not valid JSON ({error.msg}); each line must hold one JSON object"
                    ) from None
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as error:
        raise DataError(f"{path}: cannot be read as UTF-8 JSON lines ({error}); is it the right file and format?") from None


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as parquet  # imported here: only Parquet users pay for it

    try:
        parquet_file = parquet.ParquetFile(path)
    except Exception as error:  # pyarrow raises several unrelated types for a broken file
        raise DataError(f"{path}: not a readable Parquet file ({error})") from None
    columns = [name for name in PROMPT_FIELDS if name in parquet_file.schema_arrow.names] or None
    row_number = 0
    for batch in parquet_file.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=columns):
        for record in batch.to_pylist():
            row_number += 1
            yield row_number, record


def prompt_text(record: Any, field: str, where: str) -> str:
    """The prompt of one record (see the module docstring); ``where`` is "file:line" for errors."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, found {type(record).__name__}")
    if field == AUTO:
        field = next((name for name in PROMPT_FIELDS if record.get(name) is not None), "")
        if not field:
            raise DataError(
                f"{where}: no prompt field; expected one of {', '.join(PROMPT_FIELDS)} "
                f"(found {', '.join(sorted(record)) or 'no keys'}); choose one with --train-field/--eval-field"
            )
    if field not in record:
        raise DataError(f"{where}: missing field {field!r} (found {', '.join(sorted(record)) or 'no keys'})")
    value = record[field]
    if field == "messages":
        return _user_turns(value, where)
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} must be a string, found {type(value).__name__}")
    return value


def _user_turns(messages: Any, where: str) -> str:
    if not isinstance(messages, list):
        raise DataError(f"{where}: 'messages' must be a list of {{role, content}} objects")
    user_contents = []
    for turn_number, turn in enumerate(messages):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise DataError(f"{where}: messages[{turn_number}] must be an object with 'role' and 'content'")
        if turn["role"] == "user":
            if not isinstance(turn["content"], str):
                raise DataError(f"{where}: messages[{turn_number}].content must be a string")
            user_contents.append(turn["content"])
    if not user_contents:
        raise DataError(f"{where}: 'messages' has no user turn, so there is no prompt to compare")
    return "\n".join(user_contents)


def iter_prompts(path: str | Path, field: str = AUTO) -> Iterator[tuple[int, str]]:
    """``(line, prompt)`` for every record of a file."""
    for line_number, record in iter_records(path):
        yield line_number, prompt_text(record, field, f"{path}:{line_number}")
