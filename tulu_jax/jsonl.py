"""JSONL in and out for the commands (generate, eval, verify), with errors that name the file and line.

No JAX here: the verify command reads JSONL without loading an accelerator runtime. Locations are local paths
or URLs (``gs://…``, through ``data_pipeline.paths``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional

from data_pipeline.atomic_files import atomic_output
from data_pipeline.paths import as_path, is_remote, same_or_within
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


def decode_line(raw: bytes, where: str) -> str:
    """A line read in binary as text; bytes that are not UTF-8 are an error naming ``where`` (``file:line``)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(
            f"{where}: not valid UTF-8 (byte 0x{raw[error.start]:02x} at column {error.start + 1}); "
            "save the file as UTF-8"
        ) from None


def read_jsonl(path: str | os.PathLike) -> list[tuple[str, dict]]:
    """``(where, record)`` for each non-empty line; ``where`` is ``file:line`` for error messages."""
    path = as_path(path)
    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    records = []
    with path.open("rb") as source:
        for number, raw in enumerate(source, start=1):
            where = f"{path}:{number}"
            line = decode_line(raw, where)
            if not line.strip():
                continue
            records.append((where, parse_object(line, where)))
    if not records:
        raise DataError(f"{path}: no records found")
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Write ``records`` to a temporary sibling and rename it over ``path`` when complete (an object-store URL
    is written as one object, which appears whole when its upload completes)."""
    text = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    if is_remote(path):
        as_path(path).write_text(text, encoding="utf-8")
        return
    with atomic_output(path) as sink:
        sink.write(text)


def refuse_overwriting_inputs(output: Optional[str | os.PathLike], inputs: Iterable[tuple[str, Optional[str | os.PathLike]]],
                              output_flag: str = "--out") -> None:
    """Raise when ``output`` would clobber an input: the same file (links and symlinks resolved) or a path
    inside an input directory. ``inputs`` are ``(what, path)`` pairs, ``what`` naming the input in the error."""
    if output is None:
        return
    for what, path in inputs:
        if path is None or str(path) == "":
            continue
        if is_remote(output) or is_remote(path):
            if same_or_within(output, path):
                relation = "is" if same_or_within(path, output) else "lies inside"
                raise DataError(f"{output_flag} {output} {relation} the {what} {path}; writing it would destroy an "
                                f"input. Choose another {output_flag} path")
            continue
        target = Path(os.path.realpath(as_path(output)))
        source = Path(os.path.realpath(as_path(path)))
        same = target == source or (target.exists() and source.exists() and os.path.samefile(target, source))
        if same or (source.is_dir() and source in target.parents):
            relation = "is" if same else "lies inside"
            raise DataError(
                f"{output_flag} {output} {relation} the {what} {path}; writing it would destroy an input. "
                f"Choose another {output_flag} path"
            )
