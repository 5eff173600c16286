"""Loading a model for inference: config, params and tokenizer from one directory.

Today a checkpoint is a Hugging Face model directory (``config.json`` + safetensors + tokenizer files).
``load_model_for_inference`` is the one place to teach other formats (Orbax stage checkpoints).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from tulu_jax.errors import CheckpointError
from tulu_jax.models import LlamaConfig


class InferenceModel(NamedTuple):
    config: LlamaConfig
    params: Any  # the params pytree (numpy or jax arrays)
    tokenizer: Any  # data_pipeline.tokenizer.Tokenizer


def load_model_for_inference(path: str | Path, **policy: Any) -> InferenceModel:
    """Config, params and tokenizer of the checkpoint at ``path``; ``policy`` sets dtype/scan/remat fields."""
    from data_pipeline.tokenizer import load_tokenizer
    from tulu_jax.hf import load_hf_checkpoint

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{path} is not a Hugging Face model directory (no config.json); export a stage checkpoint with "
            "`tulu-jax convert` first"
        )
    config, params = load_hf_checkpoint(path, **policy)
    tokenizer = load_tokenizer(path)
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size} "
            "embeddings; the tokenizer files do not belong to this model"
        )
    return InferenceModel(config, params, tokenizer)
