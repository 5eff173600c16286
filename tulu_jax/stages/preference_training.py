"""What the two preference stages (DPO and the reward model) share around the one training loop.

Pair steps follow the step contract of ``tulu_jax.training.step``: the loss of a micro-batch is its share
of the global-batch mean (``pairs_in_micro / pairs_in_batch``), and every metric is a SUM over pairs
(``pairs`` counts them); :func:`pair_means` turns the sums into means on the host.

Batch arrays here have different ranks (``[pairs, length]`` tokens, ``[pairs]`` reference log-probs), so the
jit and host-to-device helpers below take each key's sharding from its rank. (``training.step.jit_train_step``
assumes rank-2 batches; if it learns per-key ranks these two helpers can go.)
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding

from data_pipeline.loader import BatchLoader
from data_pipeline.work_share import WorkShare
from tulu_jax import sharding
from tulu_jax.sharding import replicated
from tulu_jax.stages.batch_rows import BatchRows, prepare_batch_rows
from tulu_jax.stages.preference_batches import EXAMPLE_INDEX, host_batch, num_pairs, with_example_index
from tulu_jax.training.hooks import Evaluation, Throughput
from tulu_jax.training.step import MeshFunction

log = logging.getLogger(__name__)

PAIRS = "pairs"
# Step metrics that are already what they say (not sums over pairs).
NOT_PER_PAIR = ("loss", "grad_norm", "learning_rate", PAIRS)


def batch_shardings(mesh: Mesh, ranks: Mapping[str, int]) -> dict[str, NamedSharding]:
    return {key: sharding.batch_sharding(mesh, rank) for key, rank in ranks.items()}


def to_device_fn(mesh: Mesh, keys: Sequence[str]) -> Callable[[Mapping[str, np.ndarray]], dict]:
    """Host batch -> global ``jax.Array``s (each process passes its own rows), only ``keys``."""

    def to_device(batch: Mapping[str, np.ndarray]) -> dict:
        return {
            key: jax.make_array_from_process_local_data(sharding.batch_sharding(mesh, np.ndim(batch[key])), np.asarray(batch[key]))
            for key in keys
        }

    return to_device


def jit_pair_step(step_fn, mesh: Mesh, state_shardings: Any, ranks: Mapping[str, int], extra_shardings: tuple = ()) -> MeshFunction:
    """Jit ``step_fn(state, batch, *extra)`` with per-rank batch shardings; the state is donated."""
    jitted = jax.jit(
        step_fn,
        in_shardings=(state_shardings, batch_shardings(mesh, ranks), *extra_shardings),
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=(0,),
    )
    return MeshFunction(jitted, mesh)


def jit_pair_eval(eval_fn, mesh: Mesh, param_shardings: Any, ranks: Mapping[str, int], extra_shardings: tuple = ()) -> MeshFunction:
    jitted = jax.jit(
        eval_fn,
        in_shardings=(param_shardings, batch_shardings(mesh, ranks), *extra_shardings),
        out_shardings=replicated(mesh),
    )
    return MeshFunction(jitted, mesh)


def additive_pair_metrics(loss_mean, metric_means: Mapping[str, jax.Array], pairs: int, global_pairs) -> tuple:
    """Turn a micro-batch's mean loss and mean metrics into the step contract's additive form."""
    sums = {key: value * pairs for key, value in metric_means.items()}
    sums[PAIRS] = jnp.float32(pairs)
    return loss_mean * (pairs / global_pairs), sums


def global_pairs_context(batch: Mapping[str, jax.Array]) -> dict:
    """The ``batch_context_fn`` of pair steps: the number of pairs in the whole (global) batch."""
    return {"global_pairs": jnp.float32(batch["chosen_input_ids"].shape[0])}


def pair_means(metrics: Mapping[str, float]) -> dict[str, float]:
    """Host side of the contract: summed metrics divided by the number of pairs; loss & co. unchanged."""
    pairs = max(float(metrics.get(PAIRS, 1.0)), 1.0)
    return {key: (float(value) if key in NOT_PER_PAIR else float(value) / pairs) for key, value in metrics.items()
            if key != PAIRS}


class PairBatches:
    """A checkpointable iterator of host batches: loader rows plus whatever ``extend`` adds (reference log-probs).

    ``get_state``/``set_state`` are the loader's, so a resumed run continues with the next batch and the
    additions are recomputed from that batch's example indices.
    """

    def __init__(self, loader: BatchLoader, keys: tuple[str, ...], extend: Optional[Callable[[np.ndarray], dict]] = None):
        self.loader, self.keys, self.extend = loader, keys, extend

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        batch = next(self.loader)
        result = host_batch(batch, self.keys)
        if self.extend is not None:
            result.update(self.extend(batch[EXAMPLE_INDEX]))
        return result

    def get_state(self) -> dict:
        return self.loader.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.loader.set_state(state)


def evaluate_pairs(
    eval_step: Callable[[Any, dict], dict],
    params: Any,
    rows: Mapping[str, np.ndarray],
    keys: tuple[str, ...],
    batch_size: int,
    to_device: Callable[[Mapping[str, np.ndarray]], dict],
    extend: Optional[Callable[[np.ndarray], dict]] = None,
    max_batches: Optional[int] = None,
) -> dict[str, float]:
    """Mean metrics over the evaluation pairs (whole batches, in row order; the last partial batch is left out)."""
    process_rows = batch_size // jax.process_count()
    loader = BatchLoader(rows, process_rows, shuffle=False, num_epochs=1,
                         process_index=jax.process_index(), process_count=jax.process_count())
    totals: dict[str, float] = {}
    batches = 0
    for batch in PairBatches(loader, keys, extend):
        metrics = jax.device_get(eval_step(params, to_device(batch)))
        loss = float(metrics.pop("loss"))
        totals["loss"] = totals.get("loss", 0.0) + loss
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + float(value)
        batches += 1
        if max_batches is not None and batches >= max_batches:
            break
    totals["loss"] /= max(batches, 1)
    return pair_means(totals)


def pair_evaluation(eval_step: Callable[[Any, dict], dict], rows: Optional[Mapping[str, np.ndarray]],
                    keys: tuple[str, ...], micro_batch: int, to_device: Callable, config,
                    extend: Optional[Callable[[np.ndarray], dict]] = None) -> Optional[Evaluation]:
    """The held-out evaluation hook of a preference stage, or None without at least one micro-batch of pairs."""
    if rows is None or num_pairs(rows) < micro_batch:
        return None

    def evaluate(params) -> dict:
        return evaluate_pairs(eval_step, params, rows, keys, micro_batch, to_device, extend,
                              config.evaluation.max_batches)

    return Evaluation(evaluate, config.evaluation.every)


def pair_throughput(config) -> Throughput:
    """Tokens per second of a preference step: both sides of every pair."""
    return Throughput(tokens_per_step=2 * config.training.batch_size * config.data.max_seq_len)


def prepare_pairs(config, share: WorkShare) -> BatchRows:
    """Preference rows tagged with example indices, on the mesh, with the per-process loader (DPO and RM)."""
    return prepare_batch_rows(config, "preference", share, with_example_index)
