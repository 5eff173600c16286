"""The labelled MATH set (``math_cases.py``): every case judged as a careful grader would, none falsely accepted."""

import pytest

from tests.rewards.math_cases import CASES, HELD_OUT
from tulu_jax.rewards.math_answer import verify_math


def test_the_set_covers_the_issue():
    assert len(CASES) >= 150
    assert sum(1 for case in CASES if not case[2]) >= 40
    assert all(reason.strip() for *_, reason in CASES)


@pytest.mark.parametrize("response, label, verdict, reason", CASES + HELD_OUT, ids=[case[3] for case in CASES + HELD_OUT])
def test_careful_grader_verdict(response, label, verdict, reason):
    assert verify_math(response, label) == float(verdict), reason


def test_math_verify_path_never_executes_model_text(tmp_path):
    # sympy.parse_expr (math-verify's plain-expression reader) would run this; its LaTeX reader must not.
    from tulu_jax.rewards.time_limit import SymbolicChecker

    marker = tmp_path / "pwned"
    hostile = f"__import__('os').system('touch {marker}')"
    checker = SymbolicChecker(seconds=10.0)
    try:
        assert checker.equal(hostile, "0", method="math_verify") is False
        assert checker.equal(r"\frac{1}{2}", "0.5", method="math_verify") is True  # the judge does run
    finally:
        checker.close()
    assert not marker.exists()
