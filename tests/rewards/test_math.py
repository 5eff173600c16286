"""MATH verifier: answer extraction, normalisation, symbolic equivalence and the hard time limit."""

import time

import pytest

from tulu_jax.rewards.boxed import all_boxed
from tulu_jax.rewards.math_answer import final_answer, verify_math, verify_math_strict
from tulu_jax.rewards.math_normalize import canonical_answer
from tulu_jax.rewards.time_limit import SymbolicChecker


@pytest.mark.parametrize(
    "raw, canonical",
    [
        (r"\dfrac12", r"\frac{1}{2}"),
        (r"\tfrac{1}{2}", r"\frac{1}{2}"),
        ("0.5", r"\frac{1}{2}"),
        ("3/4", r"\frac{3}{4}"),
        ("x = 5", "5"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        (r"\$4.50", "4.5"),
        (r"10\text{ cm}", "10"),
        ("12 inches", "12"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        ("5.", "5"),
        ("1,000", "1000"),
        (r"\sqrt2", r"\sqrt{2}"),
        (r"\text{(C)}", "(C)"),
        (r"\beta", r"\beta"),  # unit removal must not eat letters of commands
    ],
)
def test_canonical_answer(raw, canonical):
    assert canonical_answer(raw) == canonical


def test_boxed_is_brace_matched_and_supports_bare_and_fbox():
    found = all_boxed(r"a \boxed{\frac{1}{2}} b \fbox{3} c $\boxed 7$ d \boxed{unclosed")
    assert [box.content for box in found] == [r"\frac{1}{2}", "3", "7"]


@pytest.mark.parametrize(
    "response, label",
    [
        (r"So the answer is $\boxed{\dfrac{1}{2}}$.", r"\frac{1}{2}"),
        (r"The value is $\boxed{0.5}$", r"\frac12"),
        (r"$\boxed{x = 5}$", "5"),
        (r"Thus $\boxed{90^\circ}$.", "90"),
        (r"\boxed{\$18.90}", "18.90"),
        (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),  # symbolic
        (r"\boxed{\frac{3\pi}{4}}", r"\frac{3}{4}\pi"),  # symbolic
        (r"\boxed{5} is the answer. Let me double check: 2 + 3 = 5, fine.", "5"),  # boxed then more text
        (r"First \boxed{3}, but correcting an error, \boxed{4}", "4"),  # several boxed: the last
        ("Final Answer: The final answer is $7$. I hope it is correct.", "7"),
        ("The total is $12$ apples.", "12"),  # last two dollars
        ("42", "42"),  # whole output
        (r"\boxed{-3, 2}", "2, -3"),  # a set of solutions in any order
        (r"\boxed{\left(1, \frac{1}{2}\right)}", r"(1,\frac{1}{2})"),
    ],
)
def test_accepts_equivalent_answers(response, label):
    assert verify_math(response, label) == 1.0


@pytest.mark.parametrize(
    "response, label",
    [
        (r"\boxed{\frac{1}{3}}", "0.333"),
        (r"\boxed{-5}", "5"),
        (r"First \boxed{4}, then \boxed{3}", "4"),  # an earlier box does not count
        (r"\boxed{(2, 1)}", "(1, 2)"),  # ordered pairs keep their order
        (r"\boxed{4}. Final Answer: The final answer is 5. I hope it is correct.", "4"),  # last statement wins
        ("", "0"),
        ("I could not solve it.", "3"),
        (r"\boxed{x+1}", "x+2"),
    ],
)
def test_rejects_wrong_answers(response, label):
    assert verify_math(response, label) == 0.0


def test_final_statement_after_box_is_the_answer():
    response = r"We get \boxed{4}. Final Answer: The final answer is 5. I hope it is correct."
    assert canonical_answer(final_answer(response)) == "5"
    assert verify_math(response, "5") == 1.0


def test_strict_variant_needs_minerva_form():
    assert verify_math_strict(r"\boxed{5}", "5") == 0.0
    assert verify_math_strict("Final Answer: The final answer is 5. I hope it is correct.", "5") == 1.0


def test_very_long_response_without_answer():
    response = "We try again. " * 20000
    started = time.monotonic()
    assert verify_math(response, r"\frac{1}{2}") == 0.0
    assert time.monotonic() - started < 5.0


def test_model_text_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    hostile = rf"\boxed{{__import__('os').system('touch {marker}')}}"
    assert verify_math(hostile, "0") == 0.0
    assert not marker.exists()


def test_crafted_answer_cannot_hang_the_checker():
    # Expanding this difference takes sympy tens of seconds; the worker is killed at the limit.
    checker = SymbolicChecker(seconds=1.0)
    try:
        assert checker.equal("1", "1") is True  # warm start: the time limit excludes start-up
        started = time.monotonic()
        hang = "(a+b+c+d+e+f)^{12}-(a-b+c-d+e-f)^{12}"
        assert checker.equal(hang, "(a+b)^{3}") is False
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + 1.5, elapsed
        assert checker.timeouts == 1
        assert checker.equal("2x", "x+x") is True  # a fresh worker answers the next check
    finally:
        checker.close()


def test_huge_powers_are_refused_without_computing():
    checker = SymbolicChecker(seconds=5.0)
    try:
        started = time.monotonic()
        assert checker.equal("2^{2^{2^{2^{2^{2}}}}}", "3") is False
        assert checker.equal("((((2^{60})^{60})^{60})^{60})", "1") is False
        assert time.monotonic() - started < 4.0
        assert checker.timeouts == 0
    finally:
        checker.close()


def test_symbolic_reader_reads_mixed_numbers_not_products():
    from tulu_jax.rewards.latex_sympy import expressions_equal

    assert expressions_equal(r"3\frac{1}{2}", r"\frac{7}{2}")
    assert not expressions_equal(r"3\frac{1}{2}", r"\frac{3}{2}")
    assert expressions_equal(r"2\frac{\pi}{3}", r"\frac{2\pi}{3}")  # a symbolic fraction is a product
