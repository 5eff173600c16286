"""One run, one config: the processes of a multi-host stage agree on what they run before any data or device work.

Every process posts its resolved config, flattened to ``key: value``, plus the identity of each input it reads
(``model.source``, a value model, the tokenizer, the data: each file's name and size, and a digest of the small
ones). Any difference is a ``ConfigError`` on every process that names the keys and the values of process 0
and of the process that differs. Then ``output_dir`` must be one storage for all: process 0 writes a token
there and every process must read it back.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any, Iterator

from data_pipeline.paths import as_path, check_bucket_exists, is_remote
from tulu_jax import distributed
from tulu_jax.config import to_dict
from tulu_jax.errors import ConfigError
from tulu_jax.stages.output_dir import check_inputs_outside_outputs, stage_inputs

SHOWN_DIFFERENCES = 4
MAX_FILES = 10_000  # per input; a data directory with more is identified by its first files
DIGESTED_BYTES = 1 << 20  # files up to this size are identified by their content too (configs, tokenizers)
TOKEN_PREFIX = ".tulu-jax-shared-"


def start_stage(config: Any) -> None:
    """What every stage checks before it reads data or touches a device (alone, only the local checks)."""
    for key, location in [("output_dir", config.output_dir), *stage_inputs(config)]:
        check_bucket_exists(location, key)
    agree_on_config(config)
    check_inputs_outside_outputs(config)
    check_output_dir_shared(config.output_dir)


def describe_run(config: Any) -> dict[str, str]:
    """``dotted.key: value`` for every config leaf, and ``<input key> (files)`` for every input's identity."""
    described = dict(_flatten(to_dict(config)))
    for key, location in stage_inputs(config):
        described[f"{key} (files)"] = input_identity(location)
    return described


def agree_on_config(config: Any) -> None:
    """Raise ``ConfigError`` on every process when any process's ``describe_run`` differs from process 0's."""
    if distributed.process_count() == 1:
        return
    posted = [json.loads(text) for text in distributed.gathered("run config", json.dumps(describe_run(config)))]
    reference = posted[0]
    differences = []
    for index, described in enumerate(posted[1:], start=1):
        for key in sorted(set(reference) | set(described)):
            if reference.get(key) != described.get(key):
                differences.append(f"{key} is {reference.get(key, '(unset)')} on process 0 but "
                                   f"{described.get(key, '(unset)')} on process {index}")
    if differences:
        shown = "; ".join(differences[:SHOWN_DIFFERENCES])
        more = f" (and {len(differences) - SHOWN_DIFFERENCES} more)" if len(differences) > SHOWN_DIFFERENCES else ""
        raise ConfigError(f"the processes of this run were started with different settings: {shown}{more}. "
                          "Start every process with the same command, config and inputs")


def check_output_dir_shared(output_dir: str) -> None:
    """Raise ``ConfigError`` on every process unless all of them see the file process 0 writes in output_dir."""
    if distributed.process_count() == 1:
        return
    token = distributed.agreed("output_dir token", uuid.uuid4().hex)
    marker = as_path(output_dir) / f"{TOKEN_PREFIX}{token}"
    if distributed.is_primary():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(token)
    distributed.barrier("output_dir token written")
    try:
        seen = marker.read_text() == token
    except OSError:
        seen = False
    answers = distributed.gathered("output_dir token seen", "1" if seen else "0")
    if distributed.is_primary():
        marker.unlink()
    blind = [index for index, answer in enumerate(answers) if answer != "1"]
    if blind:
        names = ", ".join(map(str, blind))
        raise ConfigError(
            f"output_dir {output_dir} must be storage every process shares (checkpoints and the data exchange meet "
            f"there), but process{'es' if len(blind) > 1 else ''} {names} cannot read the file process 0 wrote "
            "there; use a gs:// bucket or a shared file system mounted at the same path on every host"
        )


def input_identity(location: str) -> str:
    """``N files, B bytes, digest D`` of what lies at ``location`` (names, sizes, and small files' content)."""
    path = as_path(location)
    if not path.exists():
        return "(missing)"
    if (path / "hf" / "config.json").exists() and not (path / "config.json").exists():
        path = path / "hf"  # an earlier stage's output_dir: the export is what is read, not its checkpoints
    files = sorted(_files(path))[:MAX_FILES]
    digest = hashlib.sha256()
    total = 0
    for name, file in files:
        size = file.stat().length
        total += size
        digest.update(f"{name}\0{size}\0".encode())
        if size <= DIGESTED_BYTES:
            digest.update(file.read_bytes())
    return f"{len(files)} files, {total} bytes, digest {digest.hexdigest()[:12]}"


def _files(path) -> Iterator[tuple[str, Any]]:
    if not path.is_dir():
        yield path.name, path
        return
    if not is_remote(path):
        for root, _, names in path.walk():
            for name in names:
                file = root / name
                yield str(file.relative_to(path)), file
        return
    for child in path.iterdir():  # object stores: one level deep is enough to tell two inputs apart
        if not child.is_dir():
            yield child.name, child


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        for index, item in enumerate(value):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, json.dumps(value)
