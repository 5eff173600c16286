"""Find ``\\boxed{...}`` answers with matched braces (``\\boxed{\\frac{1}{2}}`` keeps its inner braces)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


@dataclass(frozen=True)
class Boxed:
    content: str
    start: int  # index of the backslash of \boxed in the searched text
    end: int  # index just past the closing brace (or the bare argument)


def _braced_argument(text: str, open_index: int) -> tuple[str, int] | None:
    """The text inside the braces opening at ``open_index`` and the index past the closing one."""
    depth = 0
    for index in range(open_index, len(text)):
        char = text[index]
        if char == "\\":
            continue
        if char == "{" and text[index - 1] != "\\":
            depth += 1
        elif char == "}" and text[index - 1] != "\\":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index], index + 1
    return None  # unbalanced: the model stopped mid-answer


def all_boxed(text: str) -> list[Boxed]:
    """Every complete ``\\boxed{...}``/``\\fbox{...}``/``\\boxed x`` in order of appearance."""
    found = []
    for match in _BOX_COMMAND.finditer(text):
        after = match.end()
        rest = text[after:]
        stripped = rest.lstrip(" ")
        offset = after + len(rest) - len(stripped)
        if stripped.startswith("{"):
            argument = _braced_argument(text, offset)
            if argument is not None:
                found.append(Boxed(argument[0].strip(), match.start(), argument[1]))
        elif match.group(0) == "\\boxed" and rest.startswith(" "):
            # "\boxed 5": the argument runs to the next "$" or whitespace.
            bare = re.match(r"[^\s$]+", stripped)
            if bare:
                found.append(Boxed(bare.group(0), match.start(), offset + bare.end()))
    return found


def last_boxed_content(text: str) -> Boxed | None:
    """The last complete boxed answer in ``text``, or None."""
    boxes = all_boxed(text)
    return boxes[-1] if boxes else None
