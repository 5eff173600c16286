"""Rollouts: sample responses with the in-JAX sampler on the training mesh, decode, score with the verifiers.

The policy's params are passed to the sampler as they sit in the train state (same mesh, same shardings),
so no weights are copied between a trainer and an inference engine. Scoring is plain Python on the host
(``tulu_jax.rewards.score``, picked by each prompt's ``dataset`` field).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from tulu_jax import rewards
from tulu_jax.errors import DataError, TuluError
from tulu_jax.generation import SamplingConfig, generate
from tulu_jax.generation.evaluate import dataset_label
from tulu_jax.generation.prompts import decode_response
from tulu_jax.models import LlamaConfig


@dataclass
class RolloutResult:
    """One rollout batch on the host, ``N = prompts × samples_per_prompt`` rows (a prompt's samples adjacent)."""

    prompt_ids: np.ndarray  # [N, P]
    prompt_mask: np.ndarray  # [N, P]
    response_tokens: np.ndarray  # [N, R], pad after the stop token
    response_mask: np.ndarray  # [N, R], 1 on generated tokens (the stop token included)
    sampler_logprobs: np.ndarray  # [N, R]
    lengths: np.ndarray  # [N]
    stopped: np.ndarray  # [N] bool
    verifier_scores: np.ndarray  # [N] in [0, 1]
    sequence_scores: np.ndarray  # [N]: α·score, or the non-stop penalty
    datasets: list[str]
    texts: list[str]


def repeat_prompts(batch: dict, samples_per_prompt: int) -> dict:
    """Each prompt row ``samples_per_prompt`` times in a row (GRPO groups are consecutive rows)."""
    if samples_per_prompt == 1:
        return batch
    repeated = {key: np.repeat(batch[key], samples_per_prompt, axis=0) for key in ("prompt_ids", "prompt_mask")}
    for key in ("ground_truth", "dataset"):
        repeated[key] = [value for value in batch[key] for _ in range(samples_per_prompt)]
    return repeated


def score_responses(texts: Sequence[str], ground_truths: Sequence[Any], datasets: Sequence[Any]) -> np.ndarray:
    """Verifier scores in [0, 1]; the verifier is chosen by each row's ``dataset``."""
    scores = []
    for index, (text, truth, dataset) in enumerate(zip(texts, ground_truths, datasets)):
        try:
            scores.append(float(rewards.score(text, truth, dataset)))
        except TuluError as error:
            raise DataError(f"rollout row {index} (dataset {dataset!r}): {error}") from None
    return np.asarray(scores, np.float32)


def sequence_scores(verifier_scores: np.ndarray, stopped: np.ndarray, alpha: float, nonstop_penalty: Optional[float]):
    """``α·score``; a response cut by the length limit gets ``nonstop_penalty`` instead, when one is set."""
    values = alpha * verifier_scores
    if nonstop_penalty is not None:
        values = np.where(stopped, values, nonstop_penalty)
    return values.astype(np.float32)


def run_rollout(
    policy_params,
    model_config: LlamaConfig,
    tokenizer,
    batch: dict,
    key: jax.Array,
    *,
    sampling: SamplingConfig,
    max_new_tokens: int,
    stop_ids: Sequence[int],
    alpha: float,
    nonstop_penalty: Optional[float],
    mesh: Optional[Mesh],
) -> RolloutResult:
    """Generate for every row of ``batch`` (already repeated per sample), decode and score on the host."""
    output = generate(
        policy_params, model_config, batch["prompt_ids"], batch["prompt_mask"], key,
        sampling=sampling, max_new_tokens=max_new_tokens, stop_ids=stop_ids, pad_id=tokenizer.pad_id, mesh=mesh,
    )
    tokens, logprobs, lengths, stopped = jax.device_get((output.tokens, output.logprobs, output.lengths, output.stopped))
    tokens, lengths, stopped = np.asarray(tokens), np.asarray(lengths), np.asarray(stopped)
    texts = [decode_response(tokenizer, row, int(n), bool(s)) for row, n, s in zip(tokens, lengths, stopped)]
    verifier = score_responses(texts, batch["ground_truth"], batch["dataset"])
    mask = (np.arange(tokens.shape[1])[None, :] < lengths[:, None]).astype(np.int32)
    return RolloutResult(
        prompt_ids=np.asarray(batch["prompt_ids"]),
        prompt_mask=np.asarray(batch["prompt_mask"]),
        response_tokens=tokens,
        response_mask=mask,
        sampler_logprobs=np.asarray(logprobs, np.float32),
        lengths=lengths,
        stopped=stopped,
        verifier_scores=verifier,
        sequence_scores=sequence_scores(verifier, stopped, alpha, nonstop_penalty),
        datasets=[dataset_label(name) for name in batch["dataset"]],
        texts=texts,
    )


def rollout_metrics(rollout: RolloutResult) -> dict[str, float]:
    """Mean verifiable reward and accuracy, overall and per dataset; response length and stop rate."""
    metrics = {
        "reward": float(np.mean(rollout.sequence_scores)),
        "accuracy": float(np.mean(rollout.verifier_scores == 1.0)),
        "response_length": float(np.mean(rollout.lengths)),
        "stop_rate": float(np.mean(rollout.stopped)),
    }
    by_dataset: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(rollout.datasets):
        by_dataset[label].append(index)
    for label, rows in sorted(by_dataset.items()):
        metrics[f"reward/{label}"] = float(np.mean(rollout.sequence_scores[rows]))
        metrics[f"accuracy/{label}"] = float(np.mean(rollout.verifier_scores[rows] == 1.0))
    return metrics
