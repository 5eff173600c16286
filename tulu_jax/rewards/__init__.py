"""Verifiable rewards for RLVR: plain functions of strings (no JAX).

``score(response, ground_truth, dataset)`` looks up the verifier registered for ``dataset`` (the RLVR
record's field: ``gsm8k``, ``math``, ``ifeval``, or anything added with ``register_verifier``) and returns
a score in [0, 1]. ``reward`` scales it by α (10 in Tülu 3) and applies the optional non-stop penalty.
When ``dataset`` is a list (a prompt with several verifiable parts), the score is the mean of the parts.
"""

from __future__ import annotations

from typing import Any, Callable

from tulu_jax.errors import TuluError
from tulu_jax.rewards.gsm8k import verify_gsm8k, verify_gsm8k_reference
from tulu_jax.rewards.ifeval_google import GoogleResult, evaluate_google
from tulu_jax.rewards.ifeval_tulu import IfevalGroundTruthError, verify_ifeval
from tulu_jax.rewards.math_answer import verify_math, verify_math_strict
from tulu_jax.rewards.registry import (
    UnknownDatasetError,
    get_verifier,
    register_verifier,
    registered_datasets,
    unregister_verifier,
)

__all__ = [
    "GoogleResult", "IfevalGroundTruthError", "UnknownDatasetError", "evaluate_google", "extract_response",
    "get_verifier", "label_checks", "register_verifier", "registered_datasets", "reward", "score", "unregister_verifier",
]

ASSISTANT_MARKER = "<|assistant|>\n"

register_verifier("gsm8k", verify_gsm8k)
register_verifier("gsm8k_reference", verify_gsm8k_reference)
register_verifier("math", verify_math)
register_verifier("math_strict", verify_math_strict)
register_verifier("ifeval", verify_ifeval)


def extract_response(text: str) -> str:
    """The text after the last ``<|assistant|>\\n`` (all of it when absent), stripped."""
    index = text.rfind(ASSISTANT_MARKER)
    if index >= 0:
        text = text[index + len(ASSISTANT_MARKER) :]
    return text.strip()


def score(response: str, ground_truth, dataset) -> float:
    """The verifier score in [0, 1]; lists of datasets (and matching ground truths) average their parts."""
    if isinstance(dataset, (list, tuple)):
        if not dataset:
            raise ValueError("dataset is an empty list; name at least one verifier")
        truths = ground_truth if isinstance(ground_truth, (list, tuple)) else [ground_truth] * len(dataset)
        if len(truths) != len(dataset):
            raise ValueError(f"{len(dataset)} datasets but {len(truths)} ground truths; they must pair up")
        return sum(score(response, truth, name) for truth, name in zip(truths, dataset)) / len(dataset)
    verifier = get_verifier(dataset)
    _refuse_missing_label(ground_truth, dataset)
    if isinstance(ground_truth, (list, tuple)):
        # One verifier, several labels (e.g. several ifeval constraints on one prompt): the mean.
        if not ground_truth:
            raise ValueError("ground_truth is an empty list")
        return sum(_checked(verifier(response, truth), dataset) for truth in ground_truth) / len(ground_truth)
    return _checked(verifier(response, ground_truth), dataset)


def label_checks() -> dict[str, Callable[[Any], None]]:
    """For data preparation: each verifier name mapped to a check of one ground truth that raises ``ValueError``
    when the verifier cannot read it (it scores an empty response against the label: cheap, and the label
    is parsed exactly as at a rollout step)."""

    def check_for(name: str) -> Callable[[Any], None]:
        def check(ground_truth) -> None:
            try:
                score("", ground_truth, name)
            except (TuluError, ValueError, TypeError) as error:
                raise ValueError(str(error)) from None

        return check

    return {name: check_for(name) for name in registered_datasets()}


def _refuse_missing_label(ground_truth, dataset) -> None:
    """An empty or null ground truth is no label: scoring it would call "" equal to an empty answer."""
    if ground_truth is None or (isinstance(ground_truth, str) and not ground_truth.strip()):
        raise ValueError(f"the ground truth for {dataset!r} is {'null' if ground_truth is None else 'empty'}; "
                         "give every row its label (or drop the row)")


def _checked(value, dataset) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"the verifier for {dataset!r} returned {value}, outside [0, 1]")
    return value


def reward(
    response: str,
    ground_truth,
    dataset,
    *,
    stopped: bool = True,
    alpha: float = 10.0,
    nonstop_penalty: float | None = None,
) -> float:
    """``alpha * score``; a response that never stopped (no EOS) gets ``nonstop_penalty`` instead when set."""
    if not stopped and nonstop_penalty is not None:
        return float(nonstop_penalty)
    return alpha * score(response, ground_truth, dataset)
