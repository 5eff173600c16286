"""What every stage does the same way: find the model, set up the mesh, resume, export to Hugging Face."""

from __future__ import annotations

import json
import uuid
import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from data_pipeline.paths import as_path
from data_pipeline.work_share import WorkShare
from tulu_jax import distributed
from tulu_jax.config import from_dict, to_dict
from tulu_jax.errors import CheckpointError, ConfigError
from tulu_jax.hf import read_hf_config, write_hf_side_files
from tulu_jax.hf.sharded_load import load_hf_params_sharded
from tulu_jax.hf.streamed_export import export_params_streamed
from tulu_jax.models import PRESETS, LlamaConfig, init_params, param_logical_axes, preset
from tulu_jax.models.params import param_shapes
from tulu_jax.models.vocab_resize import DEFAULT_MULTIPLE, resize_vocab, vocab_size_for_tokenizer
from tulu_jax.sharding import tree_shardings
from tulu_jax.training.state import init_params_sharded

log = logging.getLogger(__name__)

# Fields of LlamaConfig that change how a model runs, not what it is: the only overrides a checkpoint takes.
POLICY_FIELDS = ("param_dtype", "compute_dtype", "remat", "scan_layers", "attention", "splash_block_q",
                 "splash_block_kv")
EXPORT_DIR = "hf"
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


def export_hf(
    directory: str | epath.Path,
    params: Any,
    config: LlamaConfig,
    tokenizer_dir: Optional[str],
    chat_template: Optional[str],
    special_ids: dict[str, Optional[int]],
    run_config: Optional[dict] = None,
    dtype: Optional[str] = None,
) -> epath.Path:
    """Write a directory that ``transformers`` loads and chats with: weights, config, tokenizer, chat template.

    Every process calls it; tensors stream out one at a time (``hf.streamed_export``) and the directory
    appears whole. ``special_ids`` (bos/eos/pad token ids of the tokenizer) go into config.json and
    generation_config.json so that generation stops where training taught the model to stop.
    """
    config = config.replace(**{f"{name}_token_id": value for name, value in special_ids.items()})
    tokenizer_path = as_path(tokenizer_dir) if tokenizer_dir and as_path(tokenizer_dir).is_dir() else None

    def write_files(folder: epath.Path) -> None:
        written_dtype = dtype or str(jax.tree.leaves(params)[0].dtype)
        write_hf_side_files(folder, config, written_dtype, tokenizer_path)
        if chat_template is not None:
            _write_chat_template(folder, chat_template)
        if run_config is not None:
            (folder / "tulu_jax_config.json").write_text(json.dumps(run_config, indent=2) + "\n")

    return export_params_streamed(str(directory), params, config, dtype=dtype, write_files=write_files)


def _write_chat_template(directory: epath.Path, chat_template: str) -> None:
    """Put the template in tokenizer_config.json (and chat_template.jinja, which transformers 5 prefers)."""
    config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text()) if config_path.exists() else {}
    tokenizer_config["chat_template"] = chat_template
    config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    if (directory / "chat_template.jinja").exists():
        (directory / "chat_template.jinja").write_text(chat_template)


def data_work_share(output_dir: str) -> WorkShare:
    """Tokenization divided among this run's processes; the parts meet in ``output_dir`` (shared by all hosts,
    like checkpoints), written by each process and read by all between two barriers."""
    if jax.process_count() == 1:
        return WorkShare()
    folder = as_path(output_dir) / f".data-exchange-{distributed.agreed('data exchange', uuid.uuid4().hex[:12])}"

    def exchange(name: str, payload: bytes) -> list[bytes]:
        parts_dir = folder / name  # one folder per exchange, removed once every process has read it
        parts_dir.mkdir(parents=True, exist_ok=True)
        (parts_dir / f"{jax.process_index()}.npz").write_bytes(payload)
        distributed.barrier(f"data {name} written")
        parts = [(parts_dir / f"{index}.npz").read_bytes() for index in range(jax.process_count())]
        distributed.barrier(f"data {name} read")
        if jax.process_index() == 0:
            parts_dir.rmtree()
            _remove_if_empty(folder)
        # Without this, a peer's next exchange may create its folder while process 0 removes the parent.
        distributed.barrier(f"data {name} removed")
        return parts

    return WorkShare(jax.process_index(), jax.process_count(), exchange)


def _remove_if_empty(folder: epath.Path) -> None:
    """Remove ``folder`` when nothing is left in it. On an object store (gs://) a folder exists only while it
    holds objects, so the last removal may already have taken it away."""
    try:
        if not any(folder.iterdir()):
            folder.rmdir()
    except FileNotFoundError:
        pass


def run_config_dict(stage_config: Any, model_config: LlamaConfig) -> dict:
    """The resolved config saved with checkpoints and exports: the stage config plus the model it built."""
    return {**to_dict(stage_config), "resolved_model": to_dict(model_config)}


def check_vocab(config: LlamaConfig, tokenizer_vocab_size: int, tokenizer_path: str) -> None:
    if tokenizer_vocab_size > config.vocab_size:
        raise ConfigError(
            f"the tokenizer {tokenizer_path} has {tokenizer_vocab_size} tokens but the model's vocab_size is "
            f"{config.vocab_size}; use a matching tokenizer or set model.overrides.vocab_size"
        )


def numpy_batch(batch: dict) -> dict:
    """Only the numeric arrays of a loader batch (the step takes nothing else)."""
    return {key: value for key, value in batch.items() if isinstance(value, np.ndarray) and value.dtype != object}


def resume_state(checkpointer, resume_configured: bool, resume: Optional[bool], abstract, batches, *,
                 run_config: dict) -> Any:
    """The restored state (and ``batches`` moved to the next batch), or None to start afresh.

    ``resume=None`` follows the config; True insists on a checkpoint; False refuses to overwrite one.
    ``run_config`` (``run_config_dict``) lets a shape mismatch name the ``resolved_model`` fields that differ.
    """
    wanted = resume_configured if resume is None else resume
    steps = checkpointer.steps()
    if not wanted:
        if steps:
            raise CheckpointError(
                f"{checkpointer.directory} already holds checkpoints {steps} and resuming is off; "
                "resume (checkpoint.resume=true), or choose another output_dir"
            )
        return None
    restored = checkpointer.restore_latest(abstract, run_config)
    if restored is None:
        if resume:
            raise CheckpointError(f"--resume: no checkpoint in {checkpointer.directory} to resume from")
        return None
    if restored.data_state:
        batches.set_state(restored.data_state)
    log.info("resumed from %s/%d", checkpointer.directory, restored.step)
    return restored.state
