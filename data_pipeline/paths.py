"""Every user-given location (output_dir, model.source, data sources, the tokenizer, caches) as a path.

Local paths, ``file://`` URLs and ``gs://`` URLs all become ``etils.epath.Path``s, the path type Orbax
itself uses, so nothing ever turns ``gs://bucket/run`` into a local folder named ``gs:``. This module sits
at the bottom of the import graph so the data pipeline and ``tulu_jax`` share it.
"""

from __future__ import annotations

import os

from etils import epath

FILE_SCHEME = "file://"


def as_path(location: str | os.PathLike) -> epath.Path:
    """The path behind ``location``: ``file:///a/b`` is the local ``/a/b``; ``gs://…`` stays a URL."""
    text = os.fspath(location) if not isinstance(location, str) else location
    if text.startswith(FILE_SCHEME):
        text = text[len(FILE_SCHEME):] or "/"
    return epath.Path(text)


def is_remote(path: str | os.PathLike) -> bool:
    """True for object-store URLs (``gs://``…), which have no local file behind them."""
    return "://" in os.fspath(as_path(path))


def same_location(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """True when both name one place (compared as ``same_or_within`` compares)."""
    return _comparable(first) == _comparable(second)


def same_or_within(location: str | os.PathLike, place: str | os.PathLike) -> bool:
    """True when ``location`` is ``place`` or lies below it: local paths compared with links resolved,
    ``file://`` as the local path, object-store URLs as written (a trailing ``/`` aside)."""
    inner, outer = _comparable(location), _comparable(place)
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def _comparable(location: str | os.PathLike) -> str:
    path = os.fspath(as_path(location))
    return path.rstrip("/") if "://" in path else os.path.realpath(path)


def check_bucket_exists(location: str | os.PathLike, key: str) -> None:
    """Raise ``UserError`` when ``location`` is an object-store URL whose bucket does not exist (an object store
    says so only as a bare "not found" deep inside the first read or write)."""
    from data_pipeline.errors import UserError

    text = os.fspath(as_path(location))
    if not is_remote(text):
        return
    scheme, rest = text.split("://", 1)
    bucket = f"{scheme}://{rest.split('/', 1)[0]}"
    try:
        found = epath.Path(bucket).exists()
    except OSError:
        found = False
    if not found:
        raise UserError(f"{key} {text}: the bucket {bucket} does not exist, or these credentials cannot see it; "
                        "create it or correct the name")
