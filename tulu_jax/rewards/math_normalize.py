"""Canonical strings for MATH answers: the Minerva normalisation followed by the Hendrycks clean-up.

Two answers written differently but meaning the same (``\\dfrac12`` and ``\\frac{1}{2}``, ``x = 5`` and
``5``, ``90^\\circ`` and ``90``, ``\\$4.50`` and ``4.50``, ``10\\text{ cm}`` and ``10``, ``3\\frac{1}{2}``
and ``\\frac{7}{2}``, ``0.\\overline{3}`` and ``\\frac{1}{3}``) map to the same canonical string, and two
answers that differ never do:
- commas go only where they separate thousands (``10,000``); ``1,2`` stays a list of two;
- units and filler words are removed as whole words, leaving a gap, so ``3 hours 20 minutes`` is not
  ``320`` and ``\\beta`` or ``cost`` keep their letters;
- ``x = 3, y = 5`` keeps both values (each part loses its own ``name =``);
- an integer followed by a numeric fraction is a mixed number (``3\\frac{1}{2}`` = 7/2), as MATH writes it;
- ``x \\in S`` is ``S``, and ``x > 2`` is the interval ``(2,\\infty)``;
- the Unicode minus is a minus.
"""

from __future__ import annotations

import re
from fractions import Fraction

# Words that only ever decorate a final answer (units, counted things); removed as whole words.
_UNIT_WORDS = (
    "square units units unit square sq degrees degree cm centimeters meters meter metres km kilometers "
    "inches inch feet foot ft miles mile mph hours hour hrs hr minutes minute mins min seconds second secs "
    "sec days day weeks week years year cents cent dollars dollar pounds pound gm grams gram kg ways "
    "integers integer points digits students edges meals multiples sue childrentickets"
).split()
_UNIT_PATTERN = re.compile(r"(?<![\\A-Za-z])(?:" + "|".join(sorted(set(_UNIT_WORDS), key=len, reverse=True)) + r")(?![A-Za-z])")
_REMOVED_TEXT = (
    r"\ldots", r"\dots", r"\cdots", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"^{\circ }", r"\circ", r"\;",
    r"\!", '"', r"\%", "%", r"\$", r"\displaystyle",
)
_WRAPPERS = ("text", "textbf", "mathrm", "mathbf", "mbox", "boxed", "fbox", "textnormal")
_CONJUNCTIONS = re.compile(r",?\s*\\text\{\s*(?:and|or)\s*\}\s*|\s+(?:and|or)\s+")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_THIN_SPACE_THOUSANDS = re.compile(r"(?<=\d)(?:\\,|\\!|\{,\}|,\\!)(?=\d{3}(?!\d))")
_NAME_EQUALS = re.compile(r"^\s*[A-Za-z](?:_\{?\w+\}?)?(?:\([a-z]\))?\s*=")
_REPEATING = re.compile(r"(-?)(\d*)\.(\d*)\\overline\{(\d{1,40})\}")
_MIXED_NUMBER = re.compile(r"(?<![\w.}^_)\\])(-?)(\d{1,40})\\frac\{(\d{1,40})\}\{(\d{1,40})\}")
_MEMBERSHIP = re.compile(r"^\s*[A-Za-z]\s*\\in\s*")
# A one-sided inequality on a single variable is the interval it describes ("x > 2" is (2, \infty)).
_INEQUALITY = re.compile(r"^\s*[A-Za-z]\s*(>|<|\\geq?|\\leq?|\\ge|\\le)\s*([^<>=]+?)\s*$")
_INTERVALS = {">": "({},\\infty)", "\\gt": "({},\\infty)", "<": "(-\\infty,{})", "\\ge": "[{},\\infty)",
              "\\geq": "[{},\\infty)", "\\le": "(-\\infty,{}]", "\\leq": "(-\\infty,{}]"}
_BASE_SUBSCRIPT = re.compile(r"(\d+)_\{(\d+)\}")


def _unwrap_command(text: str, command: str) -> str:
    """Replace every ``\\command{X}`` (braces matched) by ``X``."""
    marker = "\\" + command + "{"
    while True:
        start = text.find(marker)
        if start < 0:
            return text
        depth, index = 0, start + len(marker) - 1
        for index in range(start + len(marker) - 1, len(text)):
            if text[index] == "{":
                depth += 1
            elif text[index] == "}":
                depth -= 1
                if depth == 0:
                    break
        else:
            # Unbalanced: drop the command and keep the rest.
            return text[:start] + text[start + len(marker) :]
        text = text[:start] + text[start + len(marker) : index] + text[index + 1 :]


def _drop_trailing_text_units(text: str) -> str:
    """``10\\text{ cm}^2`` -> ``10``: a trailing text block after a value is a unit (not ``\\text{(A)}``)."""
    match = re.match(r"^(.*\S)\s*\\(?:text|mbox|mathrm)\{\s*[A-Za-z][A-Za-z .]*\}(?:\^\{?\d\}?)?$", text)
    if match and re.search(r"[\d}]\s*$", match.group(1)):
        return match.group(1)
    return text


def _fraction_latex(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _repeating_decimal(match: re.Match) -> str:
    """``0.1\\overline{6}`` -> ``\\frac{1}{6}``."""
    sign, integer, fixed, repeating = match.groups()
    if len(integer) + len(fixed) > 40:
        return match.group(0)
    value = Fraction(int(integer or "0")) + Fraction(int(fixed or "0"), 10 ** len(fixed))
    value += Fraction(int(repeating), (10 ** len(repeating) - 1) * 10 ** len(fixed))
    return _fraction_latex(-value if sign else value)


def _mixed_number(match: re.Match) -> str:
    """``3\\frac{1}{2}`` -> ``\\frac{7}{2}`` (MATH writes mixed numbers this way, never as a product)."""
    sign, whole, numerator, denominator = match.groups()
    if int(denominator) == 0:
        return match.group(0)
    value = int(whole) + Fraction(int(numerator), int(denominator))
    return _fraction_latex(-value if sign else value)


def read_mixed_numbers(text: str) -> str:
    """Every ``3\\frac{1}{2}`` in ``text`` as ``\\frac{7}{2}`` (``2\\frac{\\pi}{3}`` stays a product)."""
    return _MIXED_NUMBER.sub(_mixed_number, text)


def _without_names(answer: str) -> str:
    """``x = 5`` -> ``5``; ``x=1, x=3`` -> ``1, 3``; ``x = 3, y = 5`` -> ``3, 5``; ``2+3=5`` -> ``5``."""
    if "=" not in answer:
        return answer
    parts = answer.split(",")
    if len(parts) > 1 and all(_NAME_EQUALS.match(part) for part in parts):
        return ",".join(part.split("=", 1)[1] for part in parts)
    return answer.split("=")[-1]


def minerva_normalize(answer: str) -> str:
    """The Minerva paper's final-answer normalisation (right-hand side of ``=``, units and TeX dressing off)."""
    answer = answer.replace("\u2212", "-").replace("\\$", "").replace("\\ ", " ").replace("mbox", "text")
    answer = _CONJUNCTIONS.sub(",", answer)
    answer = _without_names(answer)
    answer = _MEMBERSHIP.sub("", answer)
    inequality = _INEQUALITY.match(answer)
    if inequality:
        answer = _INTERVALS[inequality.group(1)].format(inequality.group(2))
    answer = _drop_trailing_text_units(answer.strip())
    answer = _UNIT_PATTERN.sub(" ", answer)
    answer = _THIN_SPACE_THOUSANDS.sub("", answer)
    answer = answer.replace(",\\!", ",").replace("{,}", ",").replace("\\,", " ")
    for expression in _REMOVED_TEXT:
        answer = answer.replace(expression, "")
    dollars = re.findall(r"\$(.*?)\$", answer, flags=re.DOTALL)
    if dollars:
        answer = dollars[-1]
    for command in _WRAPPERS:
        answer = _unwrap_command(answer, command)
    answer = answer.replace("$", "")
    # Two numbers only whitespace apart were split by a removed unit ("3 hours 20 minutes"): keep a gap.
    answer = re.sub(r"(?<=\d)\s+(?=\d)", "~", answer)
    answer = re.sub(r"\s+", "", answer)
    # TeX shorthands: \frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}, \sqrt2 -> \sqrt{2}.
    answer = re.sub(r"\\([dt]?frac)([^{\\])([^{\\])", r"\\\1{\2}{\3}", answer)
    answer = re.sub(r"\\([dt]?frac)([^{\\])(?=\{)", r"\\\1{\2}", answer)
    answer = re.sub(r"\\([dt]?frac)(\{[^{}]*\})([^{\\])", r"\\\1\2{\3}", answer)
    answer = re.sub(r"\\sqrt([^{\[\\])", r"\\sqrt{\1}", answer)
    answer = re.sub(r"\\[dt]frac", r"\\frac", answer)
    answer = _REPEATING.sub(_repeating_decimal, answer)
    answer = _unwrap_command(answer, "overline")
    answer = read_mixed_numbers(answer)
    answer = _BASE_SUBSCRIPT.sub(r"\1_\2", answer)
    if _THOUSANDS.fullmatch(answer):
        answer = answer.replace(",", "")
    return answer.strip()


# A decimal with its point ("007.50", "3."), found from the start of its digit run only, so the scan is
# linear; the old one-regex form (``0*(\d+)\.(\d*?)0+``) backtracked quadratically on long digit runs.
_DECIMAL_WITH_POINT = re.compile(r"(?<![\d.])(-?)(\d+)\.(\d*)")


def _trim_decimal(match: re.Match) -> str:
    """``007.50`` -> ``7.5``, ``3.`` and ``3.00`` -> ``3`` (leading zeros go only where a point follows)."""
    sign, integer, fraction = match.groups()
    integer = integer.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    return f"{sign}{integer}.{fraction}" if fraction else f"{sign}{integer}"


def hendrycks_normalize(answer: str) -> str:
    """The Hendrycks MATH string clean-up (``\\dfrac``, ``\\left``, ``x=``, ``0.5``, ``a/b``, trailing ``.``)."""
    answer = answer.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    answer = answer.replace("tfrac", "frac").replace("dfrac", "frac")
    answer = answer.replace("\\left", "").replace("\\right", "")
    answer = answer.replace("^{\\circ}", "").replace("^\\circ", "")
    answer = answer.replace("\\$", "").replace("\\%", "").replace("%", "")
    answer = answer.replace(" .", " 0.").replace("{.", "{0.")
    answer = answer.replace(" ", "").rstrip(".")
    if answer.startswith("."):
        answer = "0" + answer
    sides = answer.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        answer = sides[1]
    answer = _DECIMAL_WITH_POINT.sub(_trim_decimal, answer)
    if answer == "0.5":
        answer = "\\frac{1}{2}"
    match = re.fullmatch(r"(-?)(\d+)/(\d+)", answer)
    if match:
        answer = f"{match.group(1)}\\frac{{{match.group(2)}}}{{{match.group(3)}}}"
    return answer


def canonical_answer(answer: str) -> str:
    """Both normalisations in turn: equal canonical strings mean equivalent answers."""
    return hendrycks_normalize(minerva_normalize(answer))
