"""Preference pairs on their way to a step: example indices on every row, one forward for both sides.

Rows from ``data_pipeline.prepare_data(config, kind="preference")`` get an ``example_index`` column before
they reach the loader, so every batch says which examples it holds. Reference log-probs cached by example
index are looked up from it, which keeps them aligned with the rows after any shuffle and after a resume
(the loader's restored state hands out the very same indices).

``pair_sequence_logps`` is the one function that turns a pair batch into sequence log-probs; the policy
loss, the reference cache and the in-step reference all call it, so their numbers agree by construction.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp
import numpy as np

from tulu_jax.models import Llama, LlamaConfig, unembedding_matrix
from tulu_jax.objectives import chunked_token_logprobs, next_token_targets, sequence_logps

EXAMPLE_INDEX = "example_index"
SIDES = ("chosen", "rejected")
TOKEN_FIELDS = ("input_ids", "labels", "segment_ids", "positions")
PAIR_KEYS = tuple(f"{side}_{field}" for side in SIDES for field in TOKEN_FIELDS)
REFERENCE_KEYS = ("reference_chosen_logps", "reference_rejected_logps")


def with_example_index(rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A copy of the row dict with ``example_index`` (int32 ``[rows]``, 0..n-1 in row order) added."""
    count = len(rows["chosen_input_ids"])
    return {**rows, EXAMPLE_INDEX: np.arange(count, dtype=np.int32)}


def num_pairs(rows: Mapping[str, np.ndarray]) -> int:
    return int(len(rows["chosen_input_ids"]))


def both_sides(batch: Mapping[str, Any]) -> dict[str, Any]:
    """Chosen rows then rejected rows along the batch axis: ``[2·pairs, length]`` per token field."""
    return {
        field: jnp.concatenate([batch[f"chosen_{field}"], batch[f"rejected_{field}"]], axis=0)
        for field in TOKEN_FIELDS
    }


def pair_sequence_logps(
    model_config: LlamaConfig, params: Any, batch: Mapping[str, Any], chunk_size: int
) -> dict[str, jnp.ndarray]:
    """Summed response log-probs and response lengths of each side, ``[pairs]`` each, from ONE model call.

    Keys: ``chosen_logps``, ``rejected_logps``, ``chosen_lengths``, ``rejected_lengths``.
    The vocabulary projection is chunked, so ``[rows, length, vocab]`` logits never exist.
    """
    tokens = both_sides(batch)
    hidden = Llama(model_config).apply(
        {"params": params}, tokens["input_ids"], positions=tokens["positions"],
        segment_ids=tokens["segment_ids"], return_hidden=True,
    )  # [2·pairs, length, embed]
    targets, loss_mask = next_token_targets(tokens["labels"], tokens["segment_ids"])
    token_logprobs = chunked_token_logprobs(
        hidden, unembedding_matrix(params, model_config), targets, chunk_size=chunk_size,
        compute_dtype=jnp.dtype(model_config.compute_dtype),
    )  # [2·pairs, length]
    sums, lengths = sequence_logps(token_logprobs, loss_mask)
    pairs = batch["chosen_input_ids"].shape[0]
    return {
        "chosen_logps": sums[:pairs], "rejected_logps": sums[pairs:],
        "chosen_lengths": lengths[:pairs], "rejected_lengths": lengths[pairs:],
    }


def device_batch_keys(with_reference: bool) -> tuple[str, ...]:
    """The batch keys a preference step receives (the example index stays on the host)."""
    return PAIR_KEYS + (REFERENCE_KEYS if with_reference else ())


def host_batch(batch: Mapping[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Only ``keys`` of a loader batch, as contiguous numpy arrays."""
    return {key: np.ascontiguousarray(batch[key]) for key in keys}
