"""Rollouts on the global mesh: sample with the in-JAX sampler, decode and score only this process's rows.

Every process holds the same (small) prompt batch. Once per rollout the policy is copied into the sampling
layout (``generation.sampling_layout``: weights resident per group of chips, no gathers while decoding), and
the continuous-batching sampler (``generation.continuous``) decodes each group's rows. Its outputs come
back to the training mesh sharded by row: each process decodes the rows its own devices hold and scores
them with the verifiers on its host (plain Python, ``tulu_jax.rewards.score``, chosen by each row's
``dataset``). Only per-row scores and scalars cross hosts.

A rollout batch is one :class:`RolloutBatch` of global arrays (rows ``N = prompts × samples_per_prompt``,
a prompt's samples adjacent; columns ``P`` prompt then ``R`` response). The learner's prepare pass fills
in the fields that start as None.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from tulu_jax import distributed, rewards, sharding
from tulu_jax.errors import DataError, TuluError
from tulu_jax.generation import SamplingConfig
from tulu_jax.generation.evaluate import dataset_label
from tulu_jax.generation.prompts import decode_response
from tulu_jax.generation import continuous, sampling_layout
from tulu_jax.generation.continuous import DecodeSlots
from tulu_jax.generation.sampler import compiled_sampler
from tulu_jax.models import LlamaConfig


class RolloutBatch(NamedTuple):
    """One rollout batch, global arrays sharded by row; what the learner trains on.

    Per-token fields are ``[N, P + R]`` (sequence) or ``[N, R]`` (response); ``scores`` is ``[N]``.
    """

    input_ids: jax.Array  # prompt (left-padded) + response (pad after the stop token)
    positions: jax.Array  # real tokens counted from 0, as the sampler's
    segment_ids: jax.Array  # 1 on real tokens, 0 on padding
    response_mask: jax.Array  # float 1 on generated tokens (the stop token included)
    sampler_logprobs: jax.Array  # the sampler's log-probs of the drawn tokens
    scores: jax.Array  # α·verifier score, or the non-stop penalty
    # Filled in by the learner's prepare pass:
    old_logprobs: Optional[jax.Array] = None
    reference_logprobs: Optional[jax.Array] = None
    advantages: Optional[jax.Array] = None
    old_values: Optional[jax.Array] = None  # value-model estimates (estimators that need a value model)
    returns: Optional[jax.Array] = None


SEQUENCE_FIELDS = ("input_ids", "positions", "segment_ids")


def repeat_prompts(batch: dict, samples_per_prompt: int) -> dict:
    """Each prompt row ``samples_per_prompt`` times in a row (GRPO groups are consecutive rows)."""
    if samples_per_prompt == 1:
        return batch
    repeated = {key: np.repeat(batch[key], samples_per_prompt, axis=0) for key in ("prompt_ids", "prompt_mask")}
    for key in ("ground_truth", "dataset"):
        repeated[key] = [value for value in batch[key] for _ in range(samples_per_prompt)]
    return repeated


def score_responses(texts: Sequence[str], ground_truths: Sequence[Any], datasets: Sequence[Any],
                    rows: Optional[Sequence[int]] = None) -> np.ndarray:
    """Verifier scores in [0, 1]; the verifier is chosen by each row's ``dataset``."""
    scores = []
    for index, (text, truth, dataset) in enumerate(zip(texts, ground_truths, datasets)):
        try:
            scores.append(float(rewards.score(text, truth, dataset)))
        except TuluError as error:
            row = index if rows is None else rows[index]
            raise DataError(f"rollout row {row} (dataset {dataset!r}): {error}") from None
    return np.asarray(scores, np.float32)


def sequence_scores(verifier_scores: np.ndarray, stopped: np.ndarray, alpha: float, nonstop_penalty: Optional[float]):
    """``α·score``; a response cut by the length limit gets ``nonstop_penalty`` instead, when one is set."""
    values = alpha * verifier_scores
    if nonstop_penalty is not None:
        values = np.where(stopped, values, nonstop_penalty)
    return values.astype(np.float32)


def local_rows(array: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(row indices, values)`` of the rows this process's devices hold (each row once, in row order)."""
    pieces = {}
    for shard in array.addressable_shards:
        rows = shard.index[0]
        pieces.setdefault(rows.start or 0, (rows, shard.data))
    indices, values = [], []
    for start in sorted(pieces):
        rows, data = pieces[start]
        indices.append(np.arange(start, rows.stop if rows.stop is not None else array.shape[0]))
        values.append(np.asarray(data))
    return np.concatenate(indices), np.concatenate(values)


def from_local_rows(rows: np.ndarray, values: np.ndarray, length: int, array_sharding) -> jax.Array:
    """The global ``[length]`` array whose rows ``rows`` are ``values`` here (each process gives its own)."""
    position = {int(row): index for index, row in enumerate(rows)}

    def piece(index):
        wanted = np.arange(length)[index[0]]
        return values[[position[int(row)] for row in wanted]]

    return jax.make_array_from_callback((length,), array_sharding, piece)


@jax.jit
def assemble_rollout(prompt_ids, prompt_mask, tokens, logprobs, lengths, scores) -> RolloutBatch:
    response_mask = (jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]).astype(jnp.int32)
    input_ids = jnp.concatenate([prompt_ids, tokens], axis=1).astype(jnp.int32)
    segment_ids = jnp.concatenate([prompt_mask.astype(jnp.int32), response_mask], axis=1)
    positions = jnp.maximum(jnp.cumsum(segment_ids, axis=1) - 1, 0)
    return RolloutBatch(input_ids, positions, segment_ids, response_mask.astype(jnp.float32),
                        logprobs.astype(jnp.float32), scores)


def sequence_arrays(prompt_ids, prompt_mask, response_tokens, response_mask) -> dict:
    """``input_ids``, ``positions``, ``segment_ids`` ``[batch, P + R]`` of prompt + response rows, as a rollout
    batch holds them: real tokens segment 1, padding 0; positions count real tokens only, as the sampler's."""
    lengths = jnp.sum(jnp.asarray(response_mask) != 0, axis=1)
    batch = assemble_rollout(jnp.asarray(prompt_ids), jnp.asarray(prompt_mask), jnp.asarray(response_tokens),
                      jnp.zeros(np.shape(response_tokens), jnp.float32), lengths,
                      jnp.zeros((np.shape(prompt_ids)[0],), jnp.float32))
    return {key: getattr(batch, key) for key in SEQUENCE_FIELDS}


class Rollout(NamedTuple):
    """A sampled and scored rollout: the learner's batch plus what the host reports about it."""

    batch: RolloutBatch
    metrics: dict[str, float]
    verifier_scores: np.ndarray  # [N] in [0, 1], every row (replicated)


class Sampler:
    """Samples, decodes and scores rollouts for one model and mesh (``sample`` is the whole rollout)."""

    def __init__(self, model_config: LlamaConfig, tokenizer, mesh: Mesh, stop_ids: Sequence[int], alpha: float,
                 nonstop_penalty: Optional[float], sampling_group: int = 0, decode: DecodeSlots = DecodeSlots(),
                 static: bool = False):
        self.model_config, self.tokenizer, self.mesh = model_config, tokenizer, mesh
        self.stop_ids = tuple(sorted({int(token) for token in stop_ids}))
        self.alpha, self.nonstop_penalty = alpha, nonstop_penalty
        self.sample_mesh = sampling_layout.sample_mesh_for(mesh, model_config, sampling_group)
        self.decode, self.static = decode, static

    def sample(self, policy_params, prompt_batch: dict, key: jax.Array, sampling: SamplingConfig,
               max_new_tokens: int, samples_per_prompt: int, in_sampling_layout: bool = False) -> Rollout:
        """Responses for every prompt (``samples_per_prompt`` each), scored by this process's verifiers.
        ``in_sampling_layout``: the params are already the sampler's copy on ``sample_mesh`` (asynchronous RLVR
        puts them there itself), not the policy in its training layout on ``mesh``."""
        batch = repeat_prompts(prompt_batch, samples_per_prompt)
        rows_2d, rows_1d = sharding.batch_sharding(self.mesh, 2), sharding.batch_sharding(self.mesh, 1)
        output = self._decode(policy_params, batch, key, sampling, max_new_tokens, in_sampling_layout)
        prompt_ids = sharding.from_every_host(np.asarray(batch["prompt_ids"], np.int32), rows_2d)
        prompt_mask = sharding.from_every_host(np.asarray(batch["prompt_mask"], np.int32), rows_2d)
        # Back to the training mesh's rows (the same devices hold the same rows when a group is a tensor group).
        # One transfer per array: see sampling_layout.to_sampling_layout on the order of collectives.
        tokens, logprobs = jax.device_put(output.tokens, rows_2d), jax.device_put(output.logprobs, rows_2d)
        lengths, stopped = jax.device_put(output.lengths, rows_1d), jax.device_put(output.stopped, rows_1d)

        # This process's rows only: decode and verify on this host.
        rows, local_tokens = local_rows(tokens)
        _, local_lengths = local_rows(lengths)
        _, local_stopped = local_rows(stopped)
        texts = [decode_response(self.tokenizer, row, int(n), bool(s))
                 for row, n, s in zip(local_tokens, local_lengths, local_stopped)]
        try:
            verifier, failure = score_responses(texts, [batch["ground_truth"][row] for row in rows],
                                                [batch["dataset"][row] for row in rows], rows), None
        except DataError as error:
            verifier, failure = None, error
        # A row that cannot be scored stops every process here, not in the next collective.
        if not distributed.all_agree("rlvr rows scored", failure is None):
            raise failure or DataError("another process could not score its rollout rows; its log names the row")
        scores = sequence_scores(verifier, local_stopped.astype(bool), self.alpha, self.nonstop_penalty)
        count = len(batch["dataset"])
        global_verifier = from_local_rows(rows, verifier, count, rows_1d)
        global_scores = from_local_rows(rows, scores, count, rows_1d)

        all_verifier, all_scores, all_lengths, all_stopped = sharding.to_every_host(
            global_verifier, global_scores, lengths, stopped)
        labels = [dataset_label(name) for name in batch["dataset"]]
        metrics = rollout_metrics(all_scores, all_verifier, all_lengths, all_stopped, labels)
        rollout_batch = assemble_rollout(prompt_ids, prompt_mask, tokens, logprobs, lengths, global_scores)
        return Rollout(rollout_batch, metrics, all_verifier)

    def _decode(self, policy_params, batch: dict, key: jax.Array, sampling: SamplingConfig, max_new_tokens: int,
                in_sampling_layout: bool = False):
        """The continuous-batching sampler on the sampling mesh, over a copy of the policy in its layout (or the
        static sampler over the policy where it is, with ``rollout.sampler: static``)."""
        if self.static:
            return self._decode_static(policy_params, batch, key, sampling, max_new_tokens)
        mesh = self.sample_mesh
        rows = len(batch["dataset"])
        groups = continuous.group_count(mesh)
        continuous.check_rows(rows, groups)
        rows_2d, rows_1d = continuous.rollout_rows(mesh, 2), continuous.rollout_rows(mesh, 1)
        sampler_params = (policy_params if in_sampling_layout
                          else sampling_layout.to_sampling_layout(policy_params, self.model_config, mesh))
        row_tokens = np.shape(batch["prompt_ids"])[1] + int(max_new_tokens)
        decode = sampling_layout.fitted_slots(self.decode, self.model_config, mesh, rows // groups, row_tokens)
        sampler = continuous.compiled_continuous_sampler(
            sampling_layout.sampling_model(self.model_config), sampling, int(max_new_tokens), self.stop_ids,
            int(self.tokenizer.pad_id), decode, groups, mesh)
        key = jax.device_put(key, sharding.replicated(mesh))  # the same devices, named by the sampling mesh
        with sharding.activate(mesh, "sample"):
            return sampler(sampler_params, sharding.from_every_host(np.asarray(batch["prompt_ids"], np.int32), rows_2d),
                           sharding.from_every_host(np.asarray(batch["prompt_mask"], np.int32), rows_2d), key,
                           sharding.from_every_host(np.full((rows,), max_new_tokens, np.int32), rows_1d))

    def _decode_static(self, policy_params, batch: dict, key: jax.Array, sampling: SamplingConfig, max_new_tokens: int):
        rows_2d = sharding.batch_sharding(self.mesh, 2)
        sampler = compiled_sampler(self.model_config, sampling, int(max_new_tokens), self.stop_ids,
                                   int(self.tokenizer.pad_id), False, self.mesh)
        with sharding.activate(self.mesh):
            return sampler(policy_params, sharding.from_every_host(np.asarray(batch["prompt_ids"], np.int32), rows_2d),
                           sharding.from_every_host(np.asarray(batch["prompt_mask"], np.int32), rows_2d), key)


def rollout_metrics(scores: np.ndarray, verifier_scores: np.ndarray, lengths: np.ndarray, stopped: np.ndarray,
                    datasets: Sequence[str]) -> dict[str, float]:
    """Mean verifiable reward and accuracy, overall and per dataset; response length and stop rate."""
    metrics = {
        "reward": float(np.mean(scores)),
        "accuracy": float(np.mean(verifier_scores == 1.0)),
        "response_length": float(np.mean(lengths)),
        "stop_rate": float(np.mean(stopped)),
    }
    by_dataset: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(datasets):
        by_dataset[label].append(index)
    for label, rows in sorted(by_dataset.items()):
        metrics[f"reward/{label}"] = float(np.mean(scores[rows]))
        metrics[f"accuracy/{label}"] = float(np.mean(verifier_scores[rows] == 1.0))
    return metrics
