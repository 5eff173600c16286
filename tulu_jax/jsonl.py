"""JSONL in and out for the commands (generate, eval, verify), with errors that name the file and line.

No JAX here: the verify command reads JSONL without loading an accelerator runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tulu_jax.errors import DataError


def parse_object(line: str, where: str) -> dict:
    """One JSONL line as a JSON object; ``where`` (``file:line``) prefixes the error when it is not one."""
    try:
        record = json.loads(line)
    except ValueError as error:
        raise DataError(f"{where}: not valid JSON ({error}); each line must be one JSON object") from None
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record


def read_jsonl(path: Path) -> list[tuple[str, dict]]:
    """``(where, record)`` for each non-empty line; ``where`` is ``file:line`` for error messages."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    records = []
    with open(path, encoding="utf-8") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            records.append((where, parse_object(line, where)))
    if not records:
        raise DataError(f"{path}: no records found")
    return records


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as sink:
        for record in records:
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
