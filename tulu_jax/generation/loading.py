"""Loading a model for inference: config, params and tokenizer from one Hugging Face directory.

The directory is a local path or a URL (``gs://…``). Params are read through the sharded load
(``hf/sharded_load.py``): with a mesh each process reads only the slices its own devices hold, laid out as the
sampler expects them (``sampler.param_shardings``, so ``generate`` moves nothing before its one copy into the
sampling layout); without a mesh onto this process's first device. No host ever holds the whole model.
``load_model_for_inference`` is the one place to teach other formats (Orbax stage checkpoints).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple, Optional

import jax
from etils import epath
from jax.sharding import Mesh

from data_pipeline.paths import as_path
from tulu_jax.errors import CheckpointError
from tulu_jax.models import LlamaConfig


class InferenceModel(NamedTuple):
    config: LlamaConfig
    params: Any  # the params pytree of jax.Arrays (sharded over the mesh when one is given)
    tokenizer: Any  # data_pipeline.tokenizer.Tokenizer


class CheckpointFacts(NamedTuple):
    """What a checkpoint is, read without its weights."""

    directory: epath.Path
    config: LlamaConfig  # with the execution policy applied
    tokenizer: Any


def inspect_checkpoint(path: str | os.PathLike, **policy: Any) -> CheckpointFacts:
    """The checkpoint's directory, config (``policy`` sets dtype/scan/remat fields) and tokenizer, or a
    ``CheckpointError`` saying what is wrong with it; reads no weights."""
    from data_pipeline.tokenizer import load_tokenizer
    from tulu_jax.errors import TuluError
    from tulu_jax.hf import read_hf_config

    directory = as_path(path)
    if not directory.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; give a Hugging Face model directory (local or gs://)")
    if not (directory / "config.json").is_file():
        raise CheckpointError(
            f"{path} is not a Hugging Face model directory (no config.json); export a stage checkpoint with "
            "`tulu-jax convert` first"
        )
    config = read_hf_config(directory).replace(**policy)
    try:
        tokenizer = load_tokenizer(directory)
    except TuluError as error:
        raise CheckpointError(f"{path}: no tokenizer beside the model ({error})") from None
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model only {config.vocab_size} "
            "embeddings; the tokenizer files do not belong to this model"
        )
    return CheckpointFacts(directory, config, tokenizer)


def inference_param_shardings(config: LlamaConfig, mesh: Optional[Mesh]):
    """Where each weight is read to: the sampler's layout on ``mesh``, or this process's first device."""
    from tulu_jax.generation.sampler import param_shardings
    from tulu_jax.models.params import param_shapes

    if mesh is not None:
        return param_shardings(config, mesh)
    one_device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda _: one_device, param_shapes(config))


def load_model_for_inference(path: str | os.PathLike, *, mesh: Optional[Mesh] = None, **policy: Any) -> InferenceModel:
    """Config, params and tokenizer of the checkpoint at ``path`` (a local directory or a URL); params sharded
    over ``mesh`` (each process reads its devices' slices) or on this process's first device."""
    from tulu_jax.hf.sharded_load import load_hf_params_sharded

    facts = inspect_checkpoint(path, **policy)
    params = load_hf_params_sharded(facts.directory, facts.config, inference_param_shardings(facts.config, mesh))
    return InferenceModel(facts.config, params, facts.tokenizer)
