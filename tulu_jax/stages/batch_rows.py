"""What SFT, DPO and the reward model start from: prepared rows, the model config checked against the
tokenizer, the mesh checked against the micro-batch, and the per-process checkpointable loader."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
from jax.sharding import Mesh

from data_pipeline.loader import BatchLoader
from data_pipeline.pipeline import prepare_data
from data_pipeline.work_share import WorkShare
from tulu_jax.models import LlamaConfig
from tulu_jax.sharding import check_batch_divisible, make_mesh
from tulu_jax.stages.model_source import check_vocab, resolve_model_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchRows:
    prepared: Any  # data_pipeline.pipeline.PreparedData (its tokenizer)
    train_rows: dict
    eval_rows: Optional[dict]
    model_config: LlamaConfig
    mesh: Mesh
    micro_batch: int  # rows per micro-batch over all processes
    loader: BatchLoader  # this process's share of each global batch, checkpointable
    total_steps: int  # optimizer steps of the run (training.epochs or training.max_steps)


def prepare_batch_rows(config: Any, kind: str, share: WorkShare,
                       tag_rows: Callable[[dict], dict] = lambda rows: rows) -> BatchRows:
    """``config.data`` prepared as ``kind`` rows (each split passed through ``tag_rows``), on ``config.mesh``."""
    training = config.training
    prepared = prepare_data(config.data, kind=kind, log=log.info, share=share)
    train_rows = tag_rows(prepared.train)
    eval_rows = tag_rows(prepared.eval) if prepared.eval is not None else None
    model_config = resolve_model_config(config.model, prepared.tokenizer.vocab_size)
    check_vocab(model_config, prepared.tokenizer.vocab_size, config.data.tokenizer)
    mesh = make_mesh(config.mesh)
    micro_batch = training.batch_size // training.micro_batches
    check_batch_divisible(micro_batch, mesh, "micro-batch size (training.batch_size / training.micro_batches)")
    loader = BatchLoader(train_rows, training.batch_size // jax.process_count(), seed=config.data.seed,
                         shuffle=config.data.shuffle, process_index=jax.process_index(),
                         process_count=jax.process_count())
    return BatchRows(prepared, train_rows, eval_rows, model_config, mesh, micro_batch, loader,
                     training.total_steps(loader.steps_per_epoch))
