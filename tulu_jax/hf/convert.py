"""Hugging Face Llama directory ⇄ (LlamaConfig, params).

Reads ``config.json`` and safetensors (single or sharded with an index; never pickles) and writes a
directory that ``transformers.LlamaForCausalLM.from_pretrained`` loads: sharded safetensors + index,
``config.json``, ``generation_config.json``, and the tokenizer files when given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import ml_dtypes
import numpy as np
from etils import epath

from data_pipeline.paths import as_path
from tulu_jax.errors import CheckpointError
from tulu_jax.hf.mapping import IGNORED_SUFFIXES, LAYER_RULES, expected_hf_names
from tulu_jax.hf.safetensors_io import read_checkpoint_dir, write_checkpoint_dir
from tulu_jax.hf.tied_head import check_tied_head
from tulu_jax.models.config import LlamaConfig, from_hf_dict, to_hf_dict

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
)


def read_hf_config(directory) -> LlamaConfig:
    path = as_path(directory) / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory} is not a Hugging Face model directory: config.json is missing")
    try:
        settings = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); restore the file from the model's source") from None
    return from_hf_dict(settings, where=str(path))


def load_hf_checkpoint(directory: Path, **policy: Any) -> tuple[LlamaConfig, dict]:
    """Config and numpy params of a HF Llama directory; ``policy`` sets execution fields (dtype, scan, remat)."""
    directory = Path(directory)
    config = read_hf_config(directory).replace(**policy)
    tensors = read_checkpoint_dir(directory)
    return config, params_from_hf_tensors(tensors, config, where=str(directory))


def check_tensor_names(tensors: Mapping[str, Any], config: LlamaConfig, where: str = "checkpoint") -> None:
    """Raise CheckpointError unless ``tensors`` (name -> anything with ``.shape``) is this config's Llama."""
    expected = expected_hf_names(config)
    missing = [name for name in expected if name not in tensors]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"{where}: missing tensors {shown} for a {config.num_layers}-layer Llama")
    # A tied checkpoint may still carry a copy of the head (``tied_head`` refuses one that differs).
    expected_set = set(expected)
    unknown = [
        name
        for name in tensors
        if name not in expected_set and name != "lm_head.weight" and not name.endswith(IGNORED_SUFFIXES)
    ]
    if unknown:
        raise CheckpointError(f"{where}: unexpected tensors {', '.join(sorted(unknown)[:5])}: is this a Llama checkpoint?")
    _check_shape(tensors, "model.embed_tokens.weight", (config.vocab_size, config.hidden_size), where)


def params_from_hf_tensors(tensors: dict[str, np.ndarray], config: LlamaConfig, where: str = "checkpoint") -> dict:
    check_tensor_names(tensors, config, where)
    check_tied_head(config.tie_word_embeddings, tensors.__contains__, lambda name: tuple(np.shape(tensors[name])),
                    lambda name, row: np.asarray(tensors[name][row]), where)

    target_dtype = ml_dtypes.bfloat16 if config.param_dtype == "bfloat16" else np.float32

    def dtype_of(array: np.ndarray) -> np.ndarray:
        return np.asarray(array).astype(target_dtype)

    layers = []
    for i in range(config.num_layers):
        layer: dict = {}
        for hf_name, path, to_ours, _ in LAYER_RULES:
            value = dtype_of(to_ours(np.asarray(tensors[f"model.layers.{i}.{hf_name}"]), config))
            _set(layer, path, value)
        layers.append(layer)
    params: dict = {
        "embed_tokens": {"embedding": dtype_of(tensors["model.embed_tokens.weight"])},
        "norm": {"scale": dtype_of(tensors["model.norm.weight"])},
    }
    if not config.tie_word_embeddings:
        params["lm_head"] = {"kernel": dtype_of(np.asarray(tensors["lm_head.weight"]).T)}
    if config.scan_layers:
        params["layers"] = {}
        for _, path, _, _ in LAYER_RULES:
            _set(params["layers"], path, np.stack([_get(layer, path) for layer in layers]))
    else:
        params.update({f"layers_{i}": layer for i, layer in enumerate(layers)})
    return params


def hf_tensors_from_params(params: dict, config: LlamaConfig, dtype: Optional[str] = None) -> dict[str, np.ndarray]:
    """The HF tensor dict of ``params`` (cast to ``dtype`` when given: "float32" or "bfloat16")."""

    def host(array) -> np.ndarray:
        value = np.asarray(array)
        if dtype is not None:
            value = value.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype))
        return np.ascontiguousarray(value)

    tensors = {
        "model.embed_tokens.weight": host(params["embed_tokens"]["embedding"]),
        "model.norm.weight": host(params["norm"]["scale"]),
    }
    if not config.tie_word_embeddings:
        tensors["lm_head.weight"] = host(np.asarray(params["lm_head"]["kernel"]).T)
    for i in range(config.num_layers):
        for hf_name, path, _, to_hf in LAYER_RULES:
            if config.scan_layers:
                value = np.asarray(_get(params["layers"], path))[i]
            else:
                value = np.asarray(_get(params[f"layers_{i}"], path))
            tensors[f"model.layers.{i}.{hf_name}"] = host(to_hf(value, config))
    return tensors


def save_hf_checkpoint(
    directory: Path,
    params: dict,
    config: LlamaConfig,
    *,
    dtype: Optional[str] = None,
    tokenizer_dir: Optional[Path] = None,
    max_shard_bytes: int = 5 * 2**30,
) -> Path:
    """Write host (numpy) params as a directory ``transformers`` loads with ``from_pretrained``; returns it.

    For sharded or multi-host params use ``tulu_jax.hf.streamed_export``, which never gathers the model."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = hf_tensors_from_params(params, config, dtype)
    written_dtype = dtype or str(next(iter(tensors.values())).dtype)
    write_checkpoint_dir(directory, tensors, max_shard_bytes=max_shard_bytes)
    write_hf_side_files(epath.Path(directory), config, written_dtype, tokenizer_dir)
    return directory


def write_hf_side_files(directory: epath.Path, config: LlamaConfig, dtype: str, tokenizer_dir=None) -> None:
    """``config.json``, ``generation_config.json`` and the tokenizer files beside the weights."""
    directory = as_path(directory)
    hf_config = to_hf_dict(config, torch_dtype=dtype)
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    # transformers' generate stops on generation_config.json's eos_token_id: all of a list, as in config.json.
    generation = {"bos_token_id": config.bos_token_id, "eos_token_id": hf_config["eos_token_id"],
                  "pad_token_id": config.pad_token_id}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if tokenizer_dir is not None:
        copied = 0
        for name in TOKENIZER_FILES:
            source = as_path(tokenizer_dir) / name
            if source.exists():
                source.copy(directory / name, overwrite=True)
                copied += 1
        if not copied:
            raise CheckpointError(f"{tokenizer_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES)}) to copy")


def _check_shape(tensors: dict, name: str, shape: tuple[int, ...], where: str) -> None:
    if tuple(tensors[name].shape) != shape:
        raise CheckpointError(f"{where}: {name} has shape {tuple(tensors[name].shape)}, config.json implies {shape}")


def _get(tree: dict, path: tuple[str, ...]):
    for key in path:
        tree = tree[key]
    return tree


def _set(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value
