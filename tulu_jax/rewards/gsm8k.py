"""GSM8K: the response's final number must equal the label numerically, sign included.

The final number is the content of the last ``\\boxed{...}`` or ``#### N`` answer slot when the response
has one (an explicit answer beats a number mentioned after it), else the last number in the response.
Thousands separators (``1,000``), ``$``, units and a trailing period are ignored; ``12.50 == 12.5``,
``-3 != 3``, ``1/2 == 0.5``.
"""

from __future__ import annotations

import re
from fractions import Fraction

from tulu_jax.rewards.boxed import last_boxed_content
from tulu_jax.rewards.exact_numbers import ExactNumber, decimal_value, numbers_equal, ratio_value

# A comma between digits that groups exactly three digits is a thousands separator ("1,234,567");
# "3,4" (a list) keeps its comma.
_THOUSANDS_COMMA = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# A sign belongs to the number only where it cannot be a binary minus: not after a word character,
# a closing bracket or another number ("5-3" is three, "x = -3" is minus three).
_NUMBER = re.compile(
    r"(?P<sign>(?<![\w)\]}])[-−+]\s?)?\$?\s?"
    r"(?P<value>\d+(?:\.\d+)?(?:\s?/\s?\d+(?:\.\d+)?)?|\.\d+)"
)
_ANSWER_SLOT = re.compile(r"####\s*(?P<answer>[^\n]*)")
# The reference's pattern: note that the sign only attaches to decimals.
_REFERENCE_NUMBER = re.compile(r"[-+]?\d*\.\d+|\d+")


def parse_number(text: str) -> ExactNumber | None:
    """The last number in ``text`` as an exact number (``exact_numbers``), or None when there is none."""
    text = _THOUSANDS_COMMA.sub("", text)
    matches = list(_NUMBER.finditer(text))
    if not matches:
        return None
    match = matches[-1]
    numerator, _, denominator = match.group("value").replace(" ", "").partition("/")
    number = decimal_value(numerator)
    if denominator:
        ratio = ratio_value(number, decimal_value(denominator))
        if ratio is not None:
            number = ratio
        elif decimal_value(denominator) != 0:
            number = f"{numerator}/{denominator}"  # too long to divide exactly: equals only no decimal
        # else "5/0" is not an answer; fall back to the numerator.
    sign = (match.group("sign") or "").strip()
    return _negate(number) if sign in ("-", "−") else number


def _negate(number: ExactNumber) -> ExactNumber:
    if isinstance(number, Fraction):
        return -number
    return number if number == "0" else number[1:] if number.startswith("-") else "-" + number


def final_answer_text(response: str) -> str:
    """The part of the response holding its final answer: the last boxed or ``####`` slot, else all of it."""
    boxed = last_boxed_content(response)
    slots = list(_ANSWER_SLOT.finditer(response))
    slot = slots[-1] if slots else None
    if boxed is not None and (slot is None or boxed.start > slot.start()):
        if parse_number(boxed.content) is not None:
            return boxed.content
    if slot is not None and parse_number(slot.group("answer")) is not None:
        return slot.group("answer")
    return response


def verify_gsm8k(response: str, ground_truth, *, reference_compatible: bool = False) -> float:
    """1.0 when the response's final number equals ``ground_truth`` (a number or numeric string), else 0.0.

    ``reference_compatible=True`` reproduces the Tülu 3 reference bit for bit: commas between digits
    removed, the last match of ``[-+]?\\d*\\.\\d+|\\d+`` compared to the label as a lowercased string.
    """
    if reference_compatible:
        return _reference_gsm8k(response, str(ground_truth))
    expected = parse_number(str(ground_truth))
    if expected is None:
        # A non-numeric label: compare the stripped text, case-insensitively.
        return float(response.strip().lower() == str(ground_truth).strip().lower())
    found = parse_number(final_answer_text(response))
    return float(found is not None and numbers_equal(found, expected))


def _reference_gsm8k(response: str, label: str) -> float:
    response = re.sub(r"(\d),(\d)", r"\1\2", response)
    numbers = _REFERENCE_NUMBER.findall(response)
    extracted = numbers[-1] if numbers else response
    return float(extracted.lower() == label.lower())


def verify_gsm8k_reference(response: str, ground_truth) -> float:
    """The Tülu 3 reference GSM8K check (string comparison, integer signs dropped)."""
    return verify_gsm8k(response, ground_truth, reference_compatible=True)
