"""MATH ("flex"): the response's final stated answer must be equivalent to the label.

The final stated answer is whichever comes last of (1) the last brace-matched ``\\boxed{...}``
(``\\boxed x``, ``\\fbox{...}``) and (2) the Minerva sentence "final answer is X. I hope it is correct"
— when the two disagree the later statement wins, as a human grader reads the final word. Only when
neither exists: (3) the text between the last two ``$``, else (4) the whole output. Equivalence: equal
canonical strings (Minerva + Hendrycks normalisation, ``math_normalize``), else exact numbers, else a
symbolic check in a time-limited worker (``time_limit``). Comma-separated answers compare element-wise
(in any order when unbracketed: "find all solutions").
"""

from __future__ import annotations

import re
from fractions import Fraction

from tulu_jax.rewards.boxed import last_boxed_content
from tulu_jax.rewards.math_normalize import canonical_answer
from tulu_jax.rewards.time_limit import SymbolicChecker, default_checker

_MINERVA = re.compile(r"final answer is\s*(?P<answer>.*?)\s*(?:\.?\s*I hope it is correct|\n|$)", re.IGNORECASE | re.DOTALL)
_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d+)?|\.\d+)")
_SIMPLE_FRACTION = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(\d+)\}")


def minerva_answer(response: str) -> tuple[str, int] | None:
    """The text of the last "final answer is ..." statement and where it starts, or None."""
    matches = [match for match in _MINERVA.finditer(response) if match.group("answer").strip()]
    if not matches:
        return None
    last = matches[-1]
    return last.group("answer").strip().rstrip("."), last.start()


def final_answer(response: str) -> str:
    """The answer a grader would read from ``response`` (see the module docstring for the order)."""
    boxed = last_boxed_content(response)
    stated = minerva_answer(response)
    if boxed is not None and (stated is None or boxed.start >= stated[1]):
        return boxed.content
    if stated is not None:
        return stated[0]
    dollar_positions = [index for index, char in enumerate(response) if char == "$" and response[index - 1 : index] != "\\"]
    if len(dollar_positions) >= 2:
        return response[dollar_positions[-2] + 1 : dollar_positions[-1]]
    return response


def _exact_number(canonical: str) -> Fraction | None:
    if _PLAIN_NUMBER.fullmatch(canonical):
        return Fraction(canonical)
    match = _SIMPLE_FRACTION.fullmatch(canonical)
    if match and int(match.group(3)) != 0:
        sign = -1 if match.group(1) else 1
        return sign * Fraction(int(match.group(2)), int(match.group(3)))
    return None


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets: ``1,\\frac{1}{2}`` -> two parts; ``f(1,2)`` stays whole."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "({[":
            depth += 1
        elif char in ")}]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _single_equivalent(first: str, second: str, checker: SymbolicChecker | None) -> bool:
    if first == second:
        return True
    a, b = _exact_number(first), _exact_number(second)
    if a is not None and b is not None:
        return a == b
    if checker is None or not first or not second:
        return False
    return checker.equal(first, second)


def canonical_equivalent(first: str, second: str, checker: SymbolicChecker | None) -> bool:
    """Equivalence of two canonical answers, element-wise for tuples, intervals and lists."""
    if first == second:
        return True
    for opening, closing in (("(", ")"), ("[", "]"), ("\\{", "\\}")):
        if first.startswith(opening) and first.endswith(closing) and second.startswith(opening) and second.endswith(closing):
            inner_first, inner_second = first[len(opening) : -len(closing)], second[len(opening) : -len(closing)]
            parts_first, parts_second = _split_top_level(inner_first), _split_top_level(inner_second)
            if len(parts_first) > 1 and len(parts_first) == len(parts_second):
                return all(_single_equivalent(a, b, checker) for a, b in zip(parts_first, parts_second))
    parts_first, parts_second = _split_top_level(first), _split_top_level(second)
    if len(parts_first) > 1 and len(parts_first) == len(parts_second):
        remaining = list(parts_second)
        for part in parts_first:
            match = next((other for other in remaining if _single_equivalent(part, other, checker)), None)
            if match is None:
                return False
            remaining.remove(match)
        return True
    return _single_equivalent(first, second, checker)


def answers_equivalent(answer: str, label: str, *, symbolic: bool = True) -> bool:
    """True when ``answer`` and ``label`` (raw LaTeX) mean the same value."""
    checker = default_checker() if symbolic else None
    return canonical_equivalent(canonical_answer(answer), canonical_answer(label), checker)


def verify_math(response: str, ground_truth, *, symbolic: bool = True) -> float:
    """1.0 when the response's final stated answer is equivalent to ``ground_truth``, else 0.0."""
    if not response.strip():
        return 0.0
    return float(answers_equivalent(final_answer(response), str(ground_truth), symbolic=symbolic))


def verify_math_strict(response: str, ground_truth, *, symbolic: bool = True) -> float:
    """Like ``verify_math`` but only the Minerva "final answer is X. I hope it is correct" form counts."""
    stated = minerva_answer(response)
    if stated is None:
        return 0.0
    return float(answers_equivalent(stated[0], str(ground_truth), symbolic=symbolic))
