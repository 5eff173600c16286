r"""Do two canonical MATH answers (``math_normalize``) mean the same? Structure first, then each element.

Structure, as a grader reads it:
- a bracketed tuple or interval (``(1,2)``, ``[0,\infty)``) compares element by element, brackets included;
- a set (``\{1,3\}``) or a bare list (``1, 3``: "find all solutions") compares as a multiset, in any
  order, each element used once; a ``\pm`` term stands for its two values;
- a union of intervals compares as a set of intervals;
- a list never equals a single value, so ``1,2`` is not ``12`` and ``3,5`` is not ``5``.
Each element: equal strings, else equal exact numbers (any length, ``exact_numbers``), else digits with
or without the base subscript the question asked for (``1011_2``), else a symbolic check through
``Judge`` — at most ``MAX_SYMBOLIC_CHECKS`` per answer, each in the time-limited worker, and all of them
together within ``ANSWER_SECONDS``.
"""

from __future__ import annotations

import re
import time
from fractions import Fraction

from tulu_jax.rewards.exact_numbers import ExactNumber, decimal_value, numbers_equal, ratio_value

MAX_SYMBOLIC_CHECKS = 16  # per answer
# All symbolic checks of one answer together (each is cut off when this runs out): a row of a 17-element set
# whose every comparison would run into the worker's limit costs this, not 17 limits.
ANSWER_SECONDS = 1.0
MAX_ELEMENTS = 64  # a longer list is compared by string only

_SIMPLE_FRACTION = re.compile(r"(-?)\\frac\{(-?\d+(?:\.\d+)?)\}\{(\d+(?:\.\d+)?)\}")
_BASE_NUMBER = re.compile(r"(\d+)_\d+")
_CLOSING = {"(": ")", "[": "]", "{": "}"}


class Judge:
    """Symbolic element checks (``checker.equal``) with a count and a time budget shared by one answer's
    comparisons; a check gets at most the time left (``checker.equal(..., seconds=)``)."""

    def __init__(self, checker=None, budget: int = MAX_SYMBOLIC_CHECKS, seconds: float = ANSWER_SECONDS):
        self.checker = checker
        self.remaining = budget if checker is not None else 0
        self.seconds = seconds
        self._deadline: float | None = None  # set by the first check

    def equal(self, first: str, second: str, method: str = "sympy") -> bool:
        if self.remaining <= 0 or not first or not second:
            return False
        if self._deadline is None:
            self._deadline = time.monotonic() + self.seconds
        left = self._deadline - time.monotonic()
        if left <= 0:
            return False
        self.remaining -= 1
        return self.checker.equal(first, second, method=method, seconds=left)


def exact_number(canonical: str) -> ExactNumber | None:
    """A plain decimal or a ``\\frac{p}{q}`` of decimals as an exact number, else None."""
    value = decimal_value(canonical)
    if value is not None:
        return value
    match = _SIMPLE_FRACTION.fullmatch(canonical)
    if not match:
        return None
    numerator, denominator = decimal_value(match.group(2)), decimal_value(match.group(3))
    ratio = ratio_value(numerator, denominator)
    if not isinstance(ratio, Fraction):
        return None
    return -ratio if match.group(1) else ratio


def elements_equal(first: str, second: str, judge: Judge) -> bool:
    """Two single canonical values (no top-level commas) mean the same number or expression."""
    if first == second:
        return True
    a, b = exact_number(first), exact_number(second)
    if a is not None and b is not None:
        return numbers_equal(a, b)
    for based, plain in ((first, second), (second, first)):
        match = _BASE_NUMBER.fullmatch(based)
        if match and plain.isdigit():
            return match.group(1) == plain  # the digits the question asked for, base left implicit
    return judge.equal(first, second)


def split_top_level(text: str, separator: str = ",") -> list[str]:
    """Split at ``separator`` outside brackets: ``1,\\frac{1}{2}`` -> two parts; ``f(1,2)`` stays whole."""
    parts, depth, start, index = [], 0, 0, 0
    while index < len(text):
        char = text[index]
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        elif depth == 0 and text.startswith(separator, index):
            parts.append(text[start:index])
            start = index + len(separator)
            index = start
            continue
        index += 1
    parts.append(text[start:])
    return parts


def _enclosed(text: str) -> tuple[str, str, str] | None:
    """(opening, inner, closing) when one bracket pair encloses all of ``text`` (``[1,2)`` counts)."""
    if text.startswith("\\{") and text.endswith("\\}"):
        opening, closing, inner = "\\{", "\\}", text[2:-2]
    elif len(text) >= 2 and text[0] in "([" and text[-1] in ")]":
        opening, closing, inner = text[0], text[-1], text[1:-1]
    else:
        return None
    depth = 0
    for char in inner:
        depth += 1 if char in "({[" else -1 if char in ")}]" else 0
        if depth < 0:
            return None  # "(1,2)\cup(3,4)": the first bracket closes early
    return (opening, inner, closing) if depth == 0 else None


def _with_plus_minus(parts: list[str]) -> list[str]:
    """``\\pm2`` -> ``2, -2``; ``1\\pm\\sqrt{2}`` -> ``1+\\sqrt{2}, 1-\\sqrt{2}``."""
    expanded = []
    for part in parts:
        if part.count("\\pm") == 1:
            plus, minus = part.replace("\\pm", "+"), part.replace("\\pm", "-")
            expanded += [plus[1:] if plus.startswith("+") else plus, minus]
        else:
            expanded.append(part)
    return expanded


def shape(canonical: str) -> tuple[str, str, list[str]]:
    """(kind, brackets, elements): kind is ``ordered`` (tuple, interval), ``unordered`` or ``single``."""
    enclosed = _enclosed(canonical)
    if enclosed and enclosed[0] == "\\{":
        return "unordered", "", _with_plus_minus(split_top_level(enclosed[1]))
    if enclosed:
        parts = split_top_level(enclosed[1])
        if len(parts) > 1:
            return "ordered", enclosed[0] + enclosed[2], parts
    parts = _with_plus_minus(split_top_level(canonical))
    if len(parts) > 1:
        return "unordered", "", parts
    return "single", "", parts


def canonical_equivalent(first: str, second: str, judge: Judge) -> bool:
    """Equivalence of two canonical answers under the structure rules in the module docstring."""
    if first == second:
        return True
    unions = split_top_level(first, "\\cup"), split_top_level(second, "\\cup")
    if len(unions[0]) > 1 or len(unions[1]) > 1:
        return _multiset_equal(*unions, judge, canonical_equivalent)
    kind_a, brackets_a, parts_a = shape(first)
    kind_b, brackets_b, parts_b = shape(second)
    if kind_a != kind_b or brackets_a != brackets_b or len(parts_a) != len(parts_b) or len(parts_a) > MAX_ELEMENTS:
        return False
    if kind_a == "ordered":
        return all(elements_equal(a, b, judge) for a, b in zip(parts_a, parts_b))
    if kind_a == "unordered":
        return _multiset_equal(parts_a, parts_b, judge, elements_equal)
    return elements_equal(parts_a[0], parts_b[0], judge)


def _multiset_equal(parts_a: list[str], parts_b: list[str], judge: Judge, equal) -> bool:
    if len(parts_a) != len(parts_b) or len(parts_a) > MAX_ELEMENTS:
        return False
    remaining = list(parts_b)
    for part in parts_a:
        match = next((index for index, other in enumerate(remaining) if equal(part, other, judge)), None)
        if match is None:
            return False
        remaining.pop(match)
    return True


def same_shape(first: str, second: str) -> bool:
    """Whether the two canonical answers hold the same number of values (a guard before a looser judge)."""
    return len(shape(first)[2]) == len(shape(second)[2])


def has_decimal_element(*canonicals: str) -> bool:
    """Whether any value of the answers is a plain decimal with a fractional part (``0.333333``)."""
    return any("." in part and decimal_value(part) is not None for text in canonicals for part in shape(text)[2])
