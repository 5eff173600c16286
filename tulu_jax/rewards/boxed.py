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


def _matching_braces(text: str) -> dict[int, int]:
    """Index of each ``{`` -> index of its closing ``}``, in one pass (escaped ``\\{``/``\\}`` skipped)."""
    closing, open_stack = {}, []
    for index, char in enumerate(text):
        if char in "{}" and index and text[index - 1] == "\\":
            continue
        if char == "{":
            open_stack.append(index)
        elif char == "}" and open_stack:
            closing[open_stack.pop()] = index
    return closing


_AFTER_COMMAND = re.compile(r" *")
_BARE_ARGUMENT = re.compile(r"[^\s$]+")


def _box_spans(text: str):
    """(start, content_start, content_end, end) of each complete box, in order; linear in ``len(text)``."""
    closing = None
    for match in _BOX_COMMAND.finditer(text):
        offset = _AFTER_COMMAND.match(text, match.end()).end()
        if text.startswith("{", offset):
            if closing is None:
                closing = _matching_braces(text)
            end = closing.get(offset)
            if end is not None:  # else unbalanced: the model stopped mid-answer
                yield match.start(), offset + 1, end, end + 1
        elif match.group(0) == "\\boxed" and offset > match.end():
            # "\boxed 5": the argument runs to the next "$" or whitespace.
            bare = _BARE_ARGUMENT.match(text, offset)
            if bare:
                yield match.start(), offset, bare.end(), bare.end()


def _boxed(text: str, span) -> Boxed:
    start, content_start, content_end, end = span
    return Boxed(text[content_start:content_end].strip(), start, end)


def all_boxed(text: str) -> list[Boxed]:
    """Every complete ``\\boxed{...}``/``\\fbox{...}``/``\\boxed x`` in order of appearance.

    Braces are matched once for the whole text, so an unclosed ``\\boxed{`` repeated thousands of times
    costs no more than reading it.
    """
    return [_boxed(text, span) for span in _box_spans(text)]


def last_boxed_content(text: str) -> Boxed | None:
    """The last complete boxed answer in ``text``, or None (linear time, one slice)."""
    last = None
    for last in _box_spans(text):
        pass
    return None if last is None else _boxed(text, last)
