"""Verifiers are total functions (issue 23, items 11 and 12): every input gets a score in bounded time.

Each case reproduces a failure seen before the fix: a >4,300-digit number raised ``ValueError`` (Python's
int-from-string limit), an unbalanced ``\\boxed{`` repeated 8,000 times took 27 s (quadratic scan), the
Hendrycks trailing-zero regex backtracked quadratically, and an unordered list asked the symbolic worker
for every pair of elements (up to 2 s each).
"""

import time

import pytest

from tulu_jax import rewards
from tulu_jax.rewards import math_answer
from tulu_jax.rewards.boxed import all_boxed
from tulu_jax.rewards.math_normalize import hendrycks_normalize

BIG = "9" * 5000  # more digits than int() accepts from a string by default (4,300)


@pytest.mark.parametrize(
    "response, label, dataset, expected",
    [
        (BIG, "1", "gsm8k", 0.0),
        ("1", BIG, "gsm8k", 0.0),
        (f"The answer is {BIG}.", BIG, "gsm8k", 1.0),
        (f"#### {BIG}.50", f"{BIG}.5", "gsm8k", 1.0),
        (BIG, "1", "math", 0.0),
        (rf"\boxed{{{BIG}}}", BIG, "math", 1.0),
        (rf"\boxed{{{BIG}}}", BIG + "1", "math", 0.0),
        (rf"\boxed{{{BIG}.0}}", BIG, "math", 1.0),
        (rf"\boxed{{\frac{{{BIG}}}{{3}}}}", "1", "math", 0.0),
    ],
)
def test_huge_numbers_score_without_raising(response, label, dataset, expected):
    started = time.monotonic()
    assert rewards.score(response, label, dataset) == expected
    assert time.monotonic() - started < 3.0


def test_unbalanced_boxes_are_scanned_in_linear_time():
    response = "\\boxed{" * 8000  # 56 KB, no closing brace anywhere
    started = time.monotonic()
    assert all_boxed(response) == []
    assert rewards.score(response, "1", "math") == 0.0
    assert time.monotonic() - started < 1.0


def test_many_boxes_keep_the_last_and_stay_fast():
    response = "\\boxed{1} " * 20000 + "\\boxed{2"
    started = time.monotonic()
    assert [box.content for box in all_boxed(response)][-1] == "1"
    assert rewards.score(response, "1", "math") == 1.0
    assert time.monotonic() - started < 2.0


@pytest.mark.parametrize("text", ["1." + "0" * 50000 + "1", "0" * 50000 + "x", "1." + "0" * 50000 + "x"])
def test_hendrycks_trailing_zero_rule_is_linear(text):
    started = time.monotonic()
    hendrycks_normalize(text)
    assert time.monotonic() - started < 0.5


def test_hendrycks_trailing_zero_rule_still_applies():
    assert hendrycks_normalize("12.500") == "12.5"
    assert hendrycks_normalize("-007.50") == "-7.5"
    assert hendrycks_normalize("3.0") == "3"


@pytest.mark.parametrize(
    "response",
    [
        "final answer is " * 8000,
        "The final answer is" + " " * 50000 + "x",
        "$" * 50000,
        "\\frac{" * 8000,
        "\\text{a" * 8000 + "}",
        "(" * 20000,
    ],
)
def test_pathological_responses_score_quickly(response):
    started = time.monotonic()
    assert rewards.score(response, "1", "math") == 0.0
    assert time.monotonic() - started < 2.0


class _CountingChecker:
    def __init__(self):
        self.calls = 0

    def equal(self, first, second, method="sympy", seconds=None):
        self.calls += 1
        return False


def test_symbolic_comparisons_per_answer_are_capped():
    checker = _CountingChecker()
    answer = ", ".join(f"x^{{{i}}}+1" for i in range(60))
    label = ", ".join(f"y^{{{i}}}+2" for i in range(60))
    assert not math_answer.answers_equivalent(answer, label, checker=checker)
    assert 0 < checker.calls <= math_answer.MAX_SYMBOLIC_CHECKS


def test_math_verify_judge_is_bounded_by_the_worker_time_limit():
    from tulu_jax.rewards.time_limit import SymbolicChecker

    checker = SymbolicChecker(seconds=1.0)
    try:
        assert checker.equal("1", "1", method="math_verify") is True  # warm start
        started = time.monotonic()
        hang = "(a+b+c+d+e+f)^{40}-(a-b+c-d+e-f)^{40}"
        assert checker.equal(hang, "(a+b)^{3}", method="math_verify") is False
        assert time.monotonic() - started < 1.0 + 1.5
    finally:
        checker.close()
