"""The ``ifeval`` verifier: a Tülu constraint (``{"func_name": ..., **kwargs}``) or a Google IFEval record.

The ground truth is a JSON string (or an already-parsed dict). A dict with ``func_name`` is one Tülu
constraint: the named check runs with the non-null arguments and scores 1 or 0. A dict with
``instruction_id_list`` and ``kwargs`` is a Google IFEval prompt: the score is the fraction of its
instructions followed (strict). Malformed ground truth raises ``IfevalGroundTruthError`` naming the problem.
"""

from __future__ import annotations

import inspect
import json

from tulu_jax.rewards.ifeval_checks import TULU_CHECKS, IfevalGroundTruthError
from tulu_jax.rewards.ifeval_google import evaluate_google

__all__ = ["IfevalGroundTruthError", "check_tulu_constraint", "parse_ground_truth", "verify_ifeval"]


def parse_ground_truth(ground_truth) -> dict:
    """The ground truth as a dict (JSON strings are decoded)."""
    if isinstance(ground_truth, dict):
        return ground_truth
    try:
        parsed = json.loads(ground_truth)
    except (TypeError, ValueError) as error:
        raise IfevalGroundTruthError(f"ifeval ground truth is not JSON ({error}): {str(ground_truth)[:200]!r}") from None
    if not isinstance(parsed, dict):
        raise IfevalGroundTruthError(f"ifeval ground truth must be a JSON object, got {type(parsed).__name__}")
    return parsed


def check_tulu_constraint(response: str, constraint: dict) -> bool:
    """Apply the check named by ``constraint["func_name"]`` with its non-null arguments."""
    name = constraint.get("func_name")
    check = TULU_CHECKS.get(name)
    if check is None:
        raise IfevalGroundTruthError(
            f"unknown ifeval func_name {name!r}; known: {', '.join(sorted(TULU_CHECKS))}"
        )
    arguments = {key: value for key, value in constraint.items() if key != "func_name" and value is not None}
    try:
        inspect.signature(check).bind(response, **arguments)
    except TypeError as error:
        raise IfevalGroundTruthError(f"ifeval check {name} cannot take arguments {sorted(arguments)}: {error}") from None
    try:
        return bool(check(response, **arguments))
    except ValueError as error:
        raise IfevalGroundTruthError(f"ifeval check {name} rejected its arguments {arguments}: {error}") from None


def verify_ifeval(response: str, ground_truth) -> float:
    """Score in [0, 1]: 1/0 for a Tülu constraint, the followed fraction for a Google IFEval record."""
    record = parse_ground_truth(ground_truth)
    if "func_name" in record:
        return float(check_tulu_constraint(response, record))
    if "instruction_id_list" in record:
        return evaluate_google(response, record).strict_fraction
    raise IfevalGroundTruthError(
        "ifeval ground truth needs either 'func_name' (Tülu format) or 'instruction_id_list' and 'kwargs' "
        f"(Google IFEval format); got keys {sorted(record)}"
    )
