"""GSM8K verifier: numeric comparison with sign, separators, units, answer slots; and the reference switch."""

import pytest

from tulu_jax.rewards.gsm8k import parse_number, verify_gsm8k


@pytest.mark.parametrize(
    "response, label",
    [
        ("She earns 12 + 6 = 18 dollars. The answer is 18.", "18"),
        ("Total: 1,234,567 people", "1234567"),
        ("It costs $12.50 in total.", "12.5"),
        ("It costs $12.5", "12.50"),
        ("The temperature is -3 degrees.", "-3"),
        ("x = −4", "-4"),
        ("10 - 3 = 7", "7"),
        ("The answer is 72 clips.", "72"),
        ("#### 1,000", "1000"),
        ("So the answer is \\boxed{42}. Double-checking step 3 again, it holds.", "42"),
        ("#### 5\nThat took 2 steps.", "5"),
        ("half, i.e. 1/2", "0.5"),
        ("72", 72),
    ],
)
def test_accepts_equivalent_final_number(response, label):
    assert verify_gsm8k(response, label) == 1.0


@pytest.mark.parametrize(
    "response, label",
    [
        ("The answer is 3.", "-3"),
        ("The answer is -3.", "3"),
        ("The answer is 18, not 17.", "18"),  # the last number is what was stated last
        ("", "5"),
        ("I do not know.", "5"),
        ("3,4", "34"),  # a list, not a thousands separator
        ("The answer is 12.51", "12.5"),
    ],
)
def test_rejects_wrong_or_missing_number(response, label):
    assert verify_gsm8k(response, label) == 0.0


def test_parse_number_is_exact():
    assert parse_number("about 0.1 plus 0.2") == parse_number("0.2")
    assert parse_number("no digits here") is None


def test_very_long_response_is_fast_and_correct():
    response = "Let me think. " * 20000 + "The answer is 99."
    assert verify_gsm8k(response, "99") == 1.0


def test_reference_compatible_reproduces_reference_slips():
    # The reference compares strings and drops the sign of integers.
    assert verify_gsm8k("The answer is 12.50", "12.5", reference_compatible=True) == 0.0
    assert verify_gsm8k("The answer is -3", "3", reference_compatible=True) == 1.0
    assert verify_gsm8k("The answer is 1,000", "1000", reference_compatible=True) == 1.0
    # And the careful default fixes both.
    assert verify_gsm8k("The answer is 12.50", "12.5") == 1.0
    assert verify_gsm8k("The answer is -3", "3") == 0.0
