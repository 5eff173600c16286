"""Write sharded params as a Hugging Face directory one tensor at a time, on any number of processes.

Nothing is ever replicated: each process copies to host only the pieces of each tensor its devices own
(``replica_id == 0``), one layer at a time. With several processes, the others write their pieces into a
staging directory beside the output (which, like checkpoints, must be shared by all hosts); process 0
assembles each HF tensor from its own and the staged pieces, casts it and appends it to a size-capped
safetensors shard. Host memory is bounded by the largest tensor, not the model.

The directory appears whole or not at all: it is written under a temporary sibling and renamed into place.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
import ml_dtypes
import numpy as np
from etils import epath

from data_pipeline.paths import as_path
from tulu_jax import distributed
from tulu_jax.errors import CheckpointError
from tulu_jax.hf.safetensors_io import _NAMES
from tulu_jax.hf.tensor_plan import PlannedTensor, tensor_plan
from tulu_jax.models.config import LlamaConfig

log = logging.getLogger(__name__)

DEFAULT_SHARD_BYTES = 5 * 2**30


@dataclass(frozen=True)
class ExportedTensor:
    """One planned HF tensor and the leaf of the params being exported that holds it."""

    planned: PlannedTensor
    leaf: Any  # a jax.Array (all layers when stacked) or a host array

    @property
    def name(self) -> str:
        return self.planned.name


def plan_tensors(params: Any, config: LlamaConfig) -> list[ExportedTensor]:
    """Every HF tensor of ``params``, in name order."""
    return [ExportedTensor(planned, planned.leaf(params)) for planned in tensor_plan(config)]


def export_params_streamed(
    directory: str,
    params: Any,
    config: LlamaConfig,
    *,
    dtype: Optional[str] = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    write_files: Optional[Callable[[epath.Path], None]] = None,
    overwrite: bool = True,
) -> epath.Path:
    """Write ``params`` (sharded ``jax.Array``s) as HF safetensors under ``directory``; every process calls it.

    ``dtype`` ("float32" or "bfloat16") defaults to the params' own dtype. ``write_files(tmp_dir)`` adds the
    other files (config.json, tokenizer) on process 0 before the directory is renamed into place.
    """
    directory = as_path(directory)
    tensors = plan_tensors(params, config)
    export_dtype = _numpy_dtype(dtype, tensors[0].leaf.dtype)
    primary = jax.process_index() == 0
    token = _agreed_token()
    staging = directory.parent / f".{directory.name}.pieces-{token}"
    if not overwrite:
        with distributed.same_verdict("export target", step=token):
            if primary and directory.exists() and any(directory.iterdir()):
                raise CheckpointError(f"{directory} exists and is not empty; pass --overwrite to replace it whole")
    if primary:
        _remove_leftovers(directory, token)
    if jax.process_count() > 1:
        if not primary:
            _stage_pieces(tensors, staging / f"process-{jax.process_index()}", export_dtype)
        distributed.barrier("export pieces staged", step=token)
    if primary:
        temporary = directory.parent / f".{directory.name}.tmp-{token}"
        temporary.mkdir(parents=True, exist_ok=True)
        remote = _read_manifests(staging) if jax.process_count() > 1 else {}
        _write_shards(temporary, tensors, export_dtype, max_shard_bytes, remote)
        if write_files is not None:
            write_files(temporary)
        _swap_into_place(temporary, directory)
        if staging.exists():
            staging.rmtree()
    if jax.process_count() > 1:
        distributed.barrier("export written", step=token)
    return directory


def _numpy_dtype(dtype: Optional[str], default) -> np.dtype:
    if dtype is None:
        return np.dtype(default)
    return np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)


def _agreed_token() -> str:
    """A name every process agrees on (process 0's choice)."""
    return distributed.agreed("export token", uuid.uuid4().hex[:12])


def _owned_pieces(tensor: ExportedTensor):
    """``(bounds in our layer shape, host array)`` of each piece of ``tensor`` this process owns."""
    planned = tensor.planned
    if not isinstance(tensor.leaf, jax.Array):  # host params (one process): one piece, the whole tensor
        data = np.asarray(tensor.leaf)
        data = data[planned.layer] if planned.layer is not None else data
        yield [[0, dim] for dim in planned.our_shape], data
        return
    for shard in tensor.leaf.addressable_shards:
        if shard.replica_id != 0:
            continue
        index = shard.index
        if planned.layer is not None:
            start, stop, _ = index[0].indices(tensor.leaf.shape[0])
            if not start <= planned.layer < stop:
                continue
            data, index = np.asarray(_take_layer(shard.data, planned.layer - start)), index[1:]
        else:
            data = np.asarray(shard.data)
        yield [list(s.indices(dim)[:2]) for s, dim in zip(index, planned.our_shape)], data


@jax.jit
def _take_layer(stacked: jax.Array, layer) -> jax.Array:
    """One layer of a device shard; the index is traced, so one program serves every layer."""
    return jax.lax.dynamic_index_in_dim(stacked, layer, keepdims=False)


def _stage_pieces(tensors: list[ExportedTensor], folder: epath.Path, dtype: np.dtype) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for tensor in tensors:
        for bounds, data in _owned_pieces(tensor):
            file = f"{len(manifest)}.bin"
            with (folder / file).open("wb") as sink:
                sink.write(memoryview(np.ascontiguousarray(data, dtype=dtype).reshape(-1).view(np.uint8)))
            manifest.append({"name": tensor.name, "bounds": bounds, "file": file})
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _read_manifests(staging: epath.Path) -> dict[str, list[tuple[list, epath.Path]]]:
    pieces: dict[str, list[tuple[list, epath.Path]]] = {}
    for folder in sorted(staging.glob("process-*")):
        for entry in json.loads((folder / "manifest.json").read_text()):
            pieces.setdefault(entry["name"], []).append((entry["bounds"], folder / entry["file"]))
    return pieces


def _assemble(tensor: ExportedTensor, dtype: np.dtype, remote: dict) -> np.ndarray:
    """The whole HF tensor, each piece (owned or staged) placed straight into the HF layout: the only
    buffer of the tensor's size, beside one piece at a time."""
    planned = tensor.planned
    out = np.empty(planned.hf_shape, dtype)
    filled = 0
    for bounds, data in _owned_pieces(tensor):
        planned.layout.place(out, planned.our_shape, bounds, data, planned.name)
        filled += data.size
    for bounds, file in remote.get(tensor.name, []):
        shape = tuple(b - a for a, b in bounds)
        planned.layout.place(out, planned.our_shape, bounds, np.frombuffer(file.read_bytes(), dtype).reshape(shape),
                             planned.name)
        filled += math.prod(shape)
    if filled != out.size:
        raise CheckpointError(f"export of {tensor.name}: {filled} of {out.size} values were found; a process is missing")
    return out


def _write_shards(folder: epath.Path, tensors: list[ExportedTensor], dtype: np.dtype, max_shard_bytes: int,
                  remote: dict) -> None:
    nbytes = {tensor.name: math.prod(tensor.planned.hf_shape) * dtype.itemsize for tensor in tensors}
    shards: list[list[ExportedTensor]] = [[]]
    size = 0
    for tensor in tensors:
        if shards[-1] and size + nbytes[tensor.name] > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(tensor)
        size += nbytes[tensor.name]
    names = ["model.safetensors"] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))
    ]
    for file, shard in zip(names, shards):
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for tensor in shard:
            header[tensor.name] = {"dtype": _NAMES[dtype], "shape": list(tensor.planned.hf_shape),
                                   "data_offsets": [offset, offset + nbytes[tensor.name]]}
            offset += nbytes[tensor.name]
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)
        with (folder / file).open("wb") as sink:
            sink.write(struct.pack("<Q", len(encoded)))
            sink.write(encoded)
            for tensor in shard:
                sink.write(memoryview(_assemble(tensor, dtype, remote).reshape(-1).view(np.uint8)))
    if len(shards) > 1:
        weight_map = {tensor.name: file for file, shard in zip(names, shards) for tensor in shard}
        index = {"metadata": {"total_size": int(sum(nbytes.values()))}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _remove_leftovers(directory: epath.Path, token: str) -> None:
    """Remove what an export killed earlier left beside ``directory``: its temporary sibling, staged pieces,
    or the replaced old directory (a kill between the two renames). Never anything of this export."""
    if not directory.parent.exists():
        return
    prefixes = tuple(f".{directory.name}.{kind}-" for kind in ("tmp", "pieces", "old"))
    for path in directory.parent.iterdir():
        if path.name.startswith(prefixes) and not path.name.endswith(f"-{token}"):
            log.info("removing %s, left by an interrupted export", path)
            if path.is_dir():
                path.rmtree()
            else:
                path.unlink()


def _swap_into_place(temporary: epath.Path, directory: epath.Path) -> None:
    """Replace ``directory`` whole by ``temporary`` (the old contents are removed only after the rename)."""
    old = None
    if directory.exists():
        old = directory.parent / f".{directory.name}.old-{temporary.name.rsplit('-', 1)[-1]}"
        directory.rename(old)
    temporary.rename(directory)
    if old is not None:
        old.rmtree()

