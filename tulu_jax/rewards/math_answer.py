"""MATH ("flex"): the response's final stated answer must be equivalent to the label.

The final stated answer is whichever comes last of (1) the last brace-matched ``\\boxed{...}``
(``\\boxed x``, ``\\fbox{...}``) and (2) the Minerva sentence "final answer is X. I hope it is correct"
— when the two disagree the later statement wins, as a human grader reads the final word. Only when
neither exists: (3) the text between the last two ``$``, else (4) the whole output.

Equivalence, cheapest first: our canonical strings (``math_normalize``) compared with their structure
and exact numbers (``math_equivalence``); then HF ``math-verify``'s LaTeX reader on the two answers as
written, when both hold the same number of values (it treats ``1,1,2`` as the set ``{1,2}``); then our own
sympy reader. Both symbolic judges run in the time-limited worker (``time_limit``), at most
``MAX_SYMBOLIC_CHECKS`` times per answer. Model text is never executed.
"""

from __future__ import annotations

import re

from tulu_jax.rewards.boxed import last_boxed_content
from tulu_jax.rewards.exact_numbers import decimal_value, numbers_equal
from tulu_jax.rewards.math_equivalence import MAX_SYMBOLIC_CHECKS, Judge, canonical_equivalent, has_decimal_element, same_shape
from tulu_jax.rewards.math_normalize import canonical_answer
from tulu_jax.rewards.time_limit import default_checker

__all__ = ["MAX_ANSWER_CHARS", "MAX_SYMBOLIC_CHECKS", "answers_equivalent", "final_answer", "verify_math"]

MAX_ANSWER_CHARS = 1000  # a longer "final answer" is compared only as a plain number

_MINERVA = re.compile(r"final answer is", re.IGNORECASE)


def minerva_answer(response: str) -> tuple[str, int] | None:
    """The text of the last "final answer is ..." statement and where it starts, or None."""
    # Scanned from the end, each line read once: linear even for "final answer is " repeated 8,000 times.
    for match in reversed(list(_MINERVA.finditer(response))):
        line_end = response.find("\n", match.end())
        line = response[match.end() : line_end if line_end >= 0 else len(response)]
        hope = line.lower().find("i hope it is correct")
        answer = (line[:hope] if hope >= 0 else line).strip().rstrip(".").strip()
        if answer:
            return answer, match.start()
    return None


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


def answers_equivalent(answer: str, label: str, *, checker=None, symbolic: bool = True, math_verify: bool = True) -> bool:
    """True when ``answer`` and ``label`` (raw LaTeX) mean the same value.

    ``checker`` (default: the process-wide worker) judges symbolically; ``symbolic=False`` skips it and
    ``math_verify=False`` keeps only our own sympy reader (for measurement).
    """
    if len(answer) > MAX_ANSWER_CHARS or len(label) > MAX_ANSWER_CHARS:
        # Too long to normalise: only a plain number can still match (linear, no int() digit limit).
        first, second = decimal_value(answer), decimal_value(label)
        return first is not None and second is not None and numbers_equal(first, second)
    first, second = canonical_answer(answer), canonical_answer(label)
    if canonical_equivalent(first, second, Judge(None)):
        return True
    if not symbolic:
        return False
    judge = Judge(checker if checker is not None else default_checker())
    # math-verify compares numbers after rounding to 6 places (0.333333 "is" 1/3), so a plain decimal on
    # either side is left to the exact judges.
    if math_verify and same_shape(first, second) and not has_decimal_element(first, second):
        if judge.equal(answer.replace("\u2212", "-"), label, method="math_verify"):
            return True
    return canonical_equivalent(first, second, judge)


def verify_math(response: str, ground_truth, *, symbolic: bool = True, math_verify: bool = True) -> float:
    """1.0 when the response's final stated answer is equivalent to ``ground_truth``, else 0.0."""
    if not response.strip():
        return 0.0
    answer = final_answer(response)
    return float(answers_equivalent(answer, str(ground_truth), symbolic=symbolic, math_verify=math_verify))


def verify_math_strict(response: str, ground_truth, *, symbolic: bool = True) -> float:
    """Like ``verify_math`` but only the Minerva "final answer is X. I hope it is correct" form counts."""
    stated = minerva_answer(response)
    if stated is None:
        return 0.0
    return float(answers_equivalent(stated[0], str(ground_truth), symbolic=symbolic))
