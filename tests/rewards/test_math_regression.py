"""The labelled MATH set (``math_cases.py``): every case judged as a careful grader would, none falsely accepted."""

import pytest

from tests.rewards.math_cases import CASES
from tulu_jax.rewards.math_answer import verify_math


def test_the_set_covers_the_issue():
    assert len(CASES) >= 150
    assert sum(1 for case in CASES if not case[2]) >= 40
    assert all(reason.strip() for *_, reason in CASES)


@pytest.mark.parametrize("response, label, verdict, reason", CASES, ids=[case[3] for case in CASES])
def test_careful_grader_verdict(response, label, verdict, reason):
    assert verify_math(response, label) == float(verdict), reason
