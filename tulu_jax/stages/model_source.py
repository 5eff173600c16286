"""Where a stage's model comes from: a preset (random init), a Hugging Face directory, or an earlier stage's
output_dir; its config resolved without reading weights, and its params read sharded (never whole on a host)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
from etils import epath

from data_pipeline.paths import as_path
from tulu_jax.config import from_dict, to_dict
from tulu_jax.errors import CheckpointError, ConfigError
from tulu_jax.hf import read_hf_config
from tulu_jax.hf.sharded_load import load_hf_params_sharded
from tulu_jax.models import PRESETS, LlamaConfig, init_params, param_logical_axes, preset
from tulu_jax.models.params import param_shapes
from tulu_jax.models.vocab_resize import DEFAULT_MULTIPLE, resize_vocab, vocab_size_for_tokenizer
from tulu_jax.sharding import tree_shardings
from tulu_jax.stages.hf_export import EXPORT_DIR
from tulu_jax.training.state import init_params_sharded

log = logging.getLogger(__name__)

# Fields of LlamaConfig that change how a model runs, not what it is: the only overrides a checkpoint takes.
POLICY_FIELDS = ("param_dtype", "compute_dtype", "remat", "scan_layers", "attention", "splash_block_q",
                 "splash_block_kv")
# A vocabulary is padded to a multiple for layout, never by more than this many rows.
MAX_RESIZE_MULTIPLE = 4096


@dataclass(frozen=True)
class ModelConfig:
    """``source``: a preset name (random init), a Hugging Face Llama directory, or the output_dir of an
    earlier stage (its ``hf/`` export is loaded). ``overrides``: LlamaConfig fields; for a checkpoint only
    the execution policy (param_dtype, compute_dtype, remat, scan_layers) may change."""

    source: str = "tiny"
    overrides: dict = field(default_factory=dict)
    # A checkpoint whose vocabulary is smaller than the tokenizer (Tülu adds <pad> to Llama 3's 128,256 tokens)
    # grows to the tokenizer size rounded up to this multiple (128,264), new rows the mean of the old ones.
    resize_vocab_multiple: int = DEFAULT_MULTIPLE

    def __post_init__(self) -> None:
        if not str(self.source).strip():
            raise ValueError("model.source is empty: give a preset name, a Hugging Face directory or an earlier "
                             "stage's output_dir")
        if not 1 <= self.resize_vocab_multiple <= MAX_RESIZE_MULTIPLE:
            raise ConfigError(
                f"model.resize_vocab_multiple must be between 1 and {MAX_RESIZE_MULTIPLE}, got "
                f"{self.resize_vocab_multiple}: the vocabulary grows to the tokenizer size rounded up to it "
                f"(Tülu: {DEFAULT_MULTIPLE}; 128 or 256 suit TPU layouts)"
            )


def model_directory(source: str) -> Optional[epath.Path]:
    """The HF directory behind ``source`` (a local path or a URL such as ``gs://``), or None for a preset."""
    if source in PRESETS and not as_path(source).exists():
        return None
    path = as_path(source)
    if (path / "config.json").exists():
        return path
    if (path / EXPORT_DIR / "config.json").exists():
        return path / EXPORT_DIR
    raise ConfigError(
        f"model.source {source!r} is neither a preset ({', '.join(PRESETS)}), nor a Hugging Face directory "
        f"(with config.json), nor an earlier stage's output_dir (with {EXPORT_DIR}/config.json)"
    )


def resolve_model_config(model: ModelConfig, tokenizer_vocab_size: Optional[int] = None) -> LlamaConfig:
    """The LlamaConfig the stage trains, without reading any weights; a checkpoint's vocabulary grows to fit
    ``tokenizer_vocab_size`` (see ``ModelConfig.resize_vocab_multiple``)."""
    directory = model_directory(model.source)
    if directory is None:
        try:
            return from_dict(LlamaConfig, {**to_dict(preset(model.source)), **model.overrides}, where="model")
        except TypeError as error:
            raise ConfigError(f"model.overrides: {error}") from None
    not_policy = sorted(set(model.overrides) - set(POLICY_FIELDS))
    if not_policy:
        raise ConfigError(
            f"model.overrides {not_policy} would change the shapes of the checkpoint {directory}; "
            f"only {', '.join(POLICY_FIELDS)} may be overridden"
        )
    config = read_hf_config(directory).replace(**model.overrides)
    if tokenizer_vocab_size is not None:
        config = config.replace(vocab_size=vocab_size_for_tokenizer(
            tokenizer_vocab_size, config.vocab_size, model.resize_vocab_multiple))
    return config


def load_model_params(model: ModelConfig, config: LlamaConfig, seed: int, shardings: Any) -> Any:
    """Params laid out by ``shardings``: read slice by slice from the checkpoint, or initialised (seeded)
    already sharded for a preset. No process ever holds the whole model."""
    directory = model_directory(model.source)
    if directory is None:
        return init_params_sharded(lambda key: init_params(config, key), seed, shardings)
    stored = read_hf_config(directory).vocab_size
    if stored == config.vocab_size:
        return refuse_non_finite(load_hf_params_sharded(directory, config, shardings), model.source)
    as_stored = config.replace(vocab_size=stored)
    mesh = jax.tree.leaves(shardings)[0].mesh
    params = refuse_non_finite(load_hf_params_sharded(
        directory, as_stored, tree_shardings(mesh, param_logical_axes(as_stored), param_shapes(as_stored))),
        model.source)
    log.info("vocabulary grown from %d to %d rows for the tokenizer (new rows: the mean of the old ones)",
             stored, config.vocab_size)
    return resize_vocab(params, config.vocab_size, tie_word_embeddings=config.tie_word_embeddings, shardings=shardings)


def refuse_non_finite(params: Any, source: str) -> Any:
    """``params``, unless a tensor holds NaN or inf: then a ``CheckpointError`` naming it, before any step (a
    run from such weights fails its first step's finiteness check with advice about the learning rate)."""
    mesh = jax.tree.leaves(params)[0].sharding.mesh
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    finite = jax.jit(lambda tree: jax.tree.map(lambda leaf: jnp.all(jnp.isfinite(leaf)), tree),
                     out_shardings=replicated)(params)
    bad = [jax.tree_util.keystr(path) for path, ok in jax.tree_util.tree_leaves_with_path(finite) if not bool(ok)]
    if bad:
        raise CheckpointError(f"model.source {source} holds NaN or inf values in {', '.join(bad[:5])}"
                              f"{' and more' if len(bad) > 5 else ''}; the checkpoint is damaged: use another")
    return params


def check_vocab(config: LlamaConfig, tokenizer_vocab_size: int, tokenizer_path: str) -> None:
    if tokenizer_vocab_size > config.vocab_size:
        raise ConfigError(
            f"the tokenizer {tokenizer_path} has {tokenizer_vocab_size} tokens but the model's vocab_size is "
            f"{config.vocab_size}; use a matching tokenizer or set model.overrides.vocab_size"
        )
