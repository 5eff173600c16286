"""Hugging Face checkpoints ⇄ tulu-jax params, both ways, through safetensors only."""

from tulu_jax.hf.convert import (
    hf_tensors_from_params,
    load_hf_checkpoint,
    params_from_hf_tensors,
    read_hf_config,
    save_hf_checkpoint,
    write_hf_side_files,
)
from tulu_jax.hf.safetensors_io import read_checkpoint_dir, read_safetensors, write_checkpoint_dir, write_safetensors

__all__ = [
    "hf_tensors_from_params",
    "load_hf_checkpoint",
    "params_from_hf_tensors",
    "read_checkpoint_dir",
    "read_hf_config",
    "read_safetensors",
    "save_hf_checkpoint",
    "write_checkpoint_dir",
    "write_hf_side_files",
    "write_safetensors",
]
