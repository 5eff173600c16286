"""Files that appear whole or not at all: written under a temporary sibling and renamed into place."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from data_pipeline.errors import DataError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_path(path) as temporary:`` write ``temporary`` (a sibling ``.NAME.tmp-<pid>``); on success
    it is renamed to ``path``, on an error it is removed, so a kill or a failure never leaves a truncated
    ``path`` nor empties the file it replaces."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"output {path} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"cannot write {path}: a parent of it is a file, not a directory") from None
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator:
    """``with atomic_output(path) as sink:`` a text sink (UTF-8) into ``atomic_path(path)``."""
    with atomic_path(path) as temporary:
        try:
            sink = open(temporary, "w", encoding="utf-8")
        except PermissionError:
            raise DataError(f"cannot write {path}: permission denied; choose a writable path") from None
        with sink:
            yield sink
