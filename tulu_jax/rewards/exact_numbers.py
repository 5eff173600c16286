"""Exact numbers of any length: decimals and fractions compared without Python's int-from-string limit.

``int("9" * 5000)`` raises ``ValueError`` (the 4,300-digit limit), and a degenerate policy can emit such a
number. Short numbers become ``Fraction``s; a number whose canonical digits exceed ``MAX_FRACTION_DIGITS``
stays a canonical decimal string (sign, no leading zeros, no trailing fractional zeros), which is equal to
another number exactly when their canonical strings are equal.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Union

MAX_FRACTION_DIGITS = 4000  # below the interpreter's 4,300-digit limit

ExactNumber = Union[Fraction, str]

_DECIMAL = re.compile(r"(?P<sign>[-+]?)(?P<integer>\d*)(?:\.(?P<fraction>\d*))?")


def canonical_decimal(text: str) -> str | None:
    """``-007.50`` -> ``-7.5``; ``None`` unless ``text`` is a plain decimal (digits, one optional point)."""
    match = _DECIMAL.fullmatch(text.strip())
    if not match or not (match.group("integer") or match.group("fraction")):
        return None
    integer = match.group("integer").lstrip("0") or "0"
    fraction = (match.group("fraction") or "").rstrip("0")
    body = f"{integer}.{fraction}" if fraction else integer
    return body if body == "0" or match.group("sign") != "-" else "-" + body


def decimal_value(text: str) -> ExactNumber | None:
    """A plain decimal as a ``Fraction``, or as its canonical string when it is too long for one."""
    canonical = canonical_decimal(text)
    if canonical is None:
        return None
    if len(canonical) > MAX_FRACTION_DIGITS:
        return canonical
    return Fraction(canonical)


def ratio_value(numerator: ExactNumber, denominator: ExactNumber) -> ExactNumber | None:
    """``numerator / denominator``; ``None`` for a zero denominator or when either side is too long."""
    if not isinstance(numerator, Fraction) or not isinstance(denominator, Fraction):
        return None if denominator not in ("1", Fraction(1)) else numerator
    if denominator == 0:
        return None
    return numerator / denominator


def numbers_equal(first: ExactNumber, second: ExactNumber) -> bool:
    """Exact equality; a long canonical string never equals a short ``Fraction`` (canonical forms differ)."""
    if isinstance(first, Fraction) and isinstance(second, Fraction):
        return first == second
    return isinstance(first, str) and isinstance(second, str) and first == second
