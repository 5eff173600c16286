"""Hugging Face Llama directory ⇄ (LlamaConfig, params).

Reads ``config.json`` and safetensors (single or sharded with an index; never pickles) and writes a
directory that ``transformers.LlamaForCausalLM.from_pretrained`` loads: sharded safetensors + index,
``config.json``, ``generation_config.json``, and the tokenizer files when given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import ml_dtypes
import numpy as np
from etils import epath

from data_pipeline.paths import as_path
from tulu_jax.errors import CheckpointError
from tulu_jax.hf.safetensors_io import read_checkpoint_dir, write_checkpoint_dir
from tulu_jax.hf.tensor_check import check_tensors
from tulu_jax.hf.tensor_plan import by_leaf, tensor_plan, tree_set
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


def params_from_hf_tensors(tensors: dict[str, np.ndarray], config: LlamaConfig, where: str = "checkpoint") -> dict:
    """Our params (numpy, in ``config.param_dtype``) from a dict of HF tensors, checked against the config."""
    plan, shapes = tensor_plan(config), {name: tuple(np.shape(value)) for name, value in tensors.items()}
    check_tensors(plan, shapes, config.num_layers, where)
    check_tied_head(config.tie_word_embeddings, tensors.__contains__, shapes.__getitem__,
                    lambda name, row: np.asarray(tensors[name][row]), where)
    target = ml_dtypes.bfloat16 if config.param_dtype == "bfloat16" else np.float32
    params: dict = {}
    for path, group in by_leaf(plan).items():
        values = [tensor.layout.to_ours(np.asarray(tensors[tensor.name]), tensor.our_shape).astype(target)
                  for tensor in group]
        tree_set(params, path, np.stack(values) if group[0].layer is not None else values[0])
    return params


def hf_tensors_from_params(params: dict, config: LlamaConfig, dtype: Optional[str] = None) -> dict[str, np.ndarray]:
    """The HF tensor dict of ``params`` (cast to ``dtype`` when given: "float32" or "bfloat16")."""
    cast = None if dtype is None else (ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype))
    return {tensor.name: tensor.layout.to_hf(np.asarray(tensor.ours(params)), cast) for tensor in tensor_plan(config)}


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
