"""Canonical strings for MATH answers: the Minerva normalisation followed by the Hendrycks clean-up.

Two answers written differently but meaning the same (``\\dfrac12`` and ``\\frac{1}{2}``, ``x = 5`` and
``5``, ``90^\\circ`` and ``90``, ``\\$4.50`` and ``4.50``, ``10\\text{ cm}`` and ``10``) map to the same
canonical string. Units and filler words are removed as whole words only, so ``\\beta`` or ``cost`` keep
their letters.
"""

from __future__ import annotations

import re

# Words that only ever decorate a final answer (units, counted things); removed as whole words.
_UNIT_WORDS = (
    "square units units unit square sq degrees degree cm centimeters meters meter metres km kilometers "
    "inches inch feet foot ft miles mile mph hours hour minutes minute seconds second cents cent dollars "
    "dollar pounds pound gm grams gram kg ways integers integer points digits students edges meals "
    "multiples sue childrentickets"
).split()
_UNIT_PATTERN = re.compile(r"(?<![\\A-Za-z])(?:" + "|".join(sorted(set(_UNIT_WORDS), key=len, reverse=True)) + r")(?![A-Za-z])")
_REMOVED_TEXT = (
    r"\ldots", r"\dots", r"\cdots", r"\mathrm{th}", r"^\circ", r"^{\circ}", r"^{\circ }", r"\circ", r"\;", r"\,",
    r"\!", r",\!", "{,}", '"', r"\%", "%", r"\$", r"\displaystyle",
)
_WRAPPERS = ("text", "textbf", "mathrm", "mathbf", "mbox", "overline", "boxed", "fbox", "textnormal")


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
    """``10\\text{ cm}`` -> ``10``: a trailing text block after a value is a unit (not ``\\text{(A)}``)."""
    match = re.match(r"^(.*\S)\s*\\(?:text|mbox|mathrm)\{\s*[A-Za-z][A-Za-z .^{}0-9]*\}$", text)
    if match and re.search(r"[\d}]\s*$", match.group(1)):
        return match.group(1)
    return text


def minerva_normalize(answer: str) -> str:
    """The Minerva paper's final-answer normalisation (right-hand side of ``=``, units and TeX dressing off)."""
    answer = answer.split("=")[-1]
    answer = answer.replace("\\$", "").replace("\\ ", " ").replace("mbox", "text")
    answer = answer.replace(",\\text{and}", ",").replace("\\text{and}", ",").replace("\\text{ and }", ",")
    answer = _drop_trailing_text_units(answer.strip())
    answer = _UNIT_PATTERN.sub("", answer)
    for expression in _REMOVED_TEXT:
        answer = answer.replace(expression, "")
    dollars = re.findall(r"\$(.*?)\$", answer, flags=re.DOTALL)
    if dollars:
        answer = dollars[-1]
    for command in _WRAPPERS:
        answer = _unwrap_command(answer, command)
    answer = answer.replace("$", "")
    answer = re.sub(r"\s+", "", answer)
    # TeX shorthands: \frac12 -> \frac{1}{2}, \frac1{2} -> \frac{1}{2}, \sqrt2 -> \sqrt{2}.
    answer = re.sub(r"\\([dt]?frac)([^{\\])([^{\\])", r"\\\1{\2}{\3}", answer)
    answer = re.sub(r"\\([dt]?frac)([^{\\])(?=\{)", r"\\\1{\2}", answer)
    answer = re.sub(r"\\([dt]?frac)(\{[^{}]*\})([^{\\])", r"\\\1\2{\3}", answer)
    answer = re.sub(r"\\sqrt([^{\[\\])", r"\\sqrt{\1}", answer)
    if answer.replace(",", "").isdigit():
        answer = answer.replace(",", "")
    return answer.strip()


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
    answer = re.sub(r"(?<![\d.])(-?)0*(\d+)\.(\d*?)0+(?!\d)", lambda m: f"{m.group(1)}{m.group(2)}.{m.group(3)}", answer)
    answer = re.sub(r"(?<![\d.])(-?\d+)\.(?!\d)", r"\1", answer)
    if answer == "0.5":
        answer = "\\frac{1}{2}"
    match = re.fullmatch(r"(-?)(\d+)/(\d+)", answer)
    if match:
        answer = f"{match.group(1)}\\frac{{{match.group(2)}}}{{{match.group(3)}}}"
    return answer


def canonical_answer(answer: str) -> str:
    """Both normalisations in turn: equal canonical strings mean equivalent answers."""
    return hendrycks_normalize(minerva_normalize(answer))
