"""The DPO reference model's log-probs: the cached pass before training, or the in-step computation.

``cached`` (default): one forward pass of the frozen reference over every pair before training, stored by
``tulu_jax.reference_cache`` and looked up per batch by example index; no reference params exist during
training. ``in_step``: the reference params stay on the devices and each step computes the reference
log-probs of its batch first (micro-batch by micro-batch, so memory matches the policy's forward).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import numpy as np

from data_pipeline.config import DataConfig
from tulu_jax import distributed
from tulu_jax.config import to_dict
from tulu_jax.models import LlamaConfig
from tulu_jax.reference_cache import (
    ReferenceCache,
    ReferenceLogps,
    cache_key,
    compute_reference_logps,
    files_fingerprint,
    load_or_compute,
    rows_fingerprint,
    weights_identity,
)
from tulu_jax.sharding import replicated
from tulu_jax.stages.model_source import ModelConfig, model_directory
from tulu_jax.stages.preference_batches import PAIR_KEYS, pair_sequence_logps
from tulu_jax.stages.preference_training import batch_shardings
from tulu_jax.training.step import MeshFunction, split_micro_batches


def reference_identity(model: ModelConfig, seed: int) -> dict:
    """What identifies the reference weights: a preset with its seed, or the checkpoint's files."""
    directory = model_directory(model.source)
    if directory is None:
        return {"preset": model.source, "seed": seed, "overrides": dict(model.overrides)}
    return weights_identity(directory)


def reference_cache_key(
    model: ModelConfig, model_config: LlamaConfig, seed: int, data: DataConfig, rows: Mapping[str, np.ndarray]
) -> str:
    return cache_key(
        reference_identity=reference_identity(model, seed),
        model_config=to_dict(model_config),
        data_config=to_dict(data),
        tokenizer_fingerprint=files_fingerprint(data.tokenizer),
        max_seq_len=data.max_seq_len,
        rows_fingerprint=rows_fingerprint(rows),
    )


def jit_reference_pass(model_config: LlamaConfig, mesh, param_shardings: Any, chunk_size: int) -> MeshFunction:
    """``(params, pair batch) -> {chosen_logps, rejected_logps, chosen_lengths, rejected_lengths}``, replicated."""

    def forward(params, batch):
        return pair_sequence_logps(model_config, jax.lax.stop_gradient(params), batch, chunk_size)

    jitted = jax.jit(
        forward,
        in_shardings=(param_shardings, batch_shardings(mesh, {key: 2 for key in PAIR_KEYS})),
        out_shardings=replicated(mesh),
    )
    return MeshFunction(jitted, mesh)


def process_rows(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """This process's contiguous block of a global batch (the whole batch on one host)."""
    count, index = jax.process_count(), jax.process_index()
    size = len(next(iter(batch.values()))) // count
    return {key: value[index * size:(index + 1) * size] for key, value in batch.items()}


def cached_reference_logps(
    *,
    rows: Mapping[str, np.ndarray],
    key: str,
    cache_dir: str,
    params: Any,
    reference_pass: Callable[[Any, dict], Mapping[str, Any]],
    to_device: Callable[[Mapping[str, np.ndarray]], dict],
    batch_size: int,
    on_compute: Optional[Callable[[int], None]] = None,
) -> tuple[ReferenceLogps, bool]:
    """``(values, hit)``: the reference numbers of every row, from the cache or from one reference pass.

    ``params`` is only touched on a miss; ``on_compute(batch_count)`` is told how many batches the pass ran.
    """
    count = len(rows[PAIR_KEYS[0]])

    def compute() -> ReferenceLogps:
        batches = 0

        def one_batch(batch):
            nonlocal batches
            batches += 1
            return jax.device_get(reference_pass(params, to_device(process_rows(batch))))

        values = compute_reference_logps(one_batch, rows, PAIR_KEYS, batch_size)
        if on_compute is not None:
            on_compute(batches)
        return values

    return load_or_compute(ReferenceCache(cache_dir), key, count, compute, write=jax.process_index() == 0,
                           agree=agreed_by_all)


def agreed_by_all(found: bool) -> bool:
    """Process 0's answer, on every process (a cache hit decides whether collectives run)."""
    return distributed.agreed("reference cache hit", "yes" if found else "no") == "yes"


def in_step_reference(model_config: LlamaConfig, chunk_size: int, num_micro_batches: int, mesh) -> Callable:
    """``(reference_params, batch) -> {reference_chosen_logps, reference_rejected_logps}`` inside a jitted step.

    Computed one micro-batch at a time (``lax.map``) so the reference forward never holds more activations
    than a policy micro-batch does; results are put back in the batch's row order.
    """

    def compute(reference_params, batch):
        pairs = {key: batch[key] for key in PAIR_KEYS}
        micro = split_micro_batches(pairs, num_micro_batches, mesh)  # [micro, rows/micro, length]
        frozen = jax.lax.stop_gradient(reference_params)
        per_micro = jax.lax.map(lambda b: pair_sequence_logps(model_config, frozen, b, chunk_size), micro)

        def unsplit(values):  # micro-batch m, position p held row p·micro + m
            return values.swapaxes(0, 1).reshape(-1)

        return {
            "reference_chosen_logps": unsplit(per_micro["chosen_logps"]),
            "reference_rejected_logps": unsplit(per_micro["rejected_logps"]),
        }

    return compute
