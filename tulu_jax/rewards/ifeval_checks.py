"""The 25 instruction checks of the Tülu 3 IFEval-style RLVR data, judged by the instruction's plain meaning.

Each check takes the response and the arguments named as in the Tülu data (``N``, ``quantifier``,
``keyword_list`` ...) and returns a bool. Where the reference functions were looser or stricter than the
instruction, these follow the instruction: keywords match as whole words, sentences end at ``.``, ``!``
and ``?``, letters are counted case-insensitively, "N sections" means exactly N, and every check
returns a real boolean.
"""

from __future__ import annotations

import ast
import json
import re

from tulu_jax.errors import TuluError
from tulu_jax.rewards.language import is_language
from tulu_jax.rewards.text_units import (
    compare_count,
    count_whole_word,
    paragraphs_by_blank_lines,
    sentences,
    words,
)


class IfevalGroundTruthError(TuluError):
    """The ifeval ground truth cannot be read or names an unknown check or argument."""


def verify_keywords(text: str, keyword_list) -> bool:
    """Every keyword appears as a whole word or phrase (case-insensitive)."""
    return all(count_whole_word(text, keyword) > 0 for keyword in _as_list(keyword_list))


def verify_keyword_frequency(text: str, word: str, N) -> bool:
    """``word`` appears exactly N times as a whole word (case-insensitive)."""
    return count_whole_word(text, word) == int(N)


def validate_forbidden_words(text: str, forbidden_words) -> bool:
    """None of the forbidden words appears as a whole word (case-insensitive)."""
    return not any(count_whole_word(text, word) > 0 for word in _as_list(forbidden_words))


def verify_letter_frequency(text: str, letter: str, N) -> bool:
    """The letter appears exactly N times, either case ("the letter q" means q and Q)."""
    if len(letter) != 1:
        raise ValueError(f"letter must be a single character, got {letter!r}")
    return text.lower().count(letter.lower()) == int(N)


def validate_response_language(text: str, language: str) -> bool:
    """The detected language of the response is ``language`` (ISO 639-1)."""
    return bool(is_language(text, language))


_DIVIDER = re.compile(r"^\s*\*\s*\*\s*\*\s*$", re.MULTILINE)


def verify_paragraph_count(text: str, N) -> bool:
    """Exactly N non-empty paragraphs separated by markdown ``* * *`` divider lines."""
    parts = [part.strip() for part in _DIVIDER.split(text.strip())]
    return all(parts) and len(parts) == int(N)


def validate_word_constraint(text: str, N, quantifier: str) -> bool:
    """The word count is at least / around (±10%) / at most N."""
    return compare_count(len(words(text)), int(N), quantifier)


def verify_sentence_constraint(text: str, N, quantifier: str) -> bool:
    """The sentence count is at least / around (±10%, min 1) / at most N."""
    return compare_count(len(sentences(text)), int(N), quantifier)


def validate_paragraphs(text: str, N, first_word: str, i) -> bool:
    """Exactly N paragraphs separated by blank lines, the i-th (1-based) starting with ``first_word``."""
    paragraphs = paragraphs_by_blank_lines(text)
    index = int(i)
    if len(paragraphs) != int(N) or not 1 <= index <= len(paragraphs):
        return False
    first = words(paragraphs[index - 1])
    return bool(first) and first[0].lower() == first_word.strip().lower()


def verify_postscript(text: str, postscript_marker: str) -> bool:
    """A line starts with the marker (e.g. ``P.S.``, any case) and some text follows the last such marker."""
    pattern = r"^\s*" + re.escape(postscript_marker.strip())
    markers = list(re.finditer(pattern, text, flags=re.MULTILINE | re.IGNORECASE))
    return bool(markers) and re.search(r"\w", text[markers[-1].end() :]) is not None


def validate_placeholders(text: str, N) -> bool:
    """At least N non-empty square-bracket placeholders such as ``[address]``."""
    return len(re.findall(r"\[[^\[\]\n]*\w[^\[\]\n]*\]", text)) >= int(N)


_BULLET = re.compile(r"^\s*(?:[*+]\s+(?!\*)|-\s+)\S", re.MULTILINE)


def verify_bullet_points(text: str, N) -> bool:
    """Exactly N markdown bullet lines (``* item``, ``- item``, ``+ item``; not ``**bold**`` or ``* * *``)."""
    bullets = [line for line in text.splitlines() if _BULLET.match(line) and not _DIVIDER.match(line)]
    return len(bullets) == int(N)


def validate_title(text: str) -> bool:
    """A title wrapped in double angular brackets, e.g. ``<<poem of joy>>``."""
    return re.search(r"<<[^\n<>]*\w[^\n<>]*>>", text) is not None


def validate_choice(text: str, options) -> bool:
    """The response gives exactly one of the options (the whole response, or one option quoted in it)."""
    choices = [str(option).strip() for option in _as_list(options) if str(option).strip()]
    answer = text.strip().strip("\"'").strip()
    if any(answer.rstrip(".").lower() == choice.rstrip(".").lower() for choice in choices):
        return True
    present = {choice for choice in choices if count_whole_word(text, choice.rstrip(".")) > 0}
    return len(present) == 1


def validate_highlighted_sections(text: str, N) -> bool:
    """At least N markdown highlights ``*like this*`` or ``**like this**`` with some text inside."""
    highlights = re.findall(r"(?<!\*)\*\*([^\n*]+)\*\*(?!\*)|(?<!\*)\*([^\n*]+)\*(?!\*)", text)
    return sum(1 for bold, italic in highlights if (bold or italic).strip()) >= int(N)


def validate_sections(text: str, N, section_splitter: str) -> bool:
    """Exactly N sections, each beginning with ``{section_splitter} {number}`` (e.g. ``SECTION 1``)."""
    pattern = r"(?<!\w)" + re.escape(section_splitter.strip()) + r"\s*\d+"
    return len(re.findall(pattern, text, flags=re.IGNORECASE)) == int(N)


def validate_json_format(text: str) -> bool:
    """The whole response is JSON (optionally inside one ```json fenced block)."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json|JSON|Json)?\s*\n?(.*?)\n?```", body, flags=re.DOTALL)
    if fenced:
        body = fenced.group(1).strip()
    if not body:
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def validate_repeat_prompt(text: str, original_prompt: str) -> bool:
    """The response begins with the request repeated unchanged (surrounding whitespace aside)."""
    prompt = original_prompt.strip()
    return bool(prompt) and text.strip().startswith(prompt)


def validate_two_responses(text: str) -> bool:
    """Two different, non-empty responses separated by one line of six asterisks ``******``."""
    parts = re.split(r"\*{6}", text)
    if len(parts) != 2:
        return False
    first, second = parts[0].strip(), parts[1].strip()
    return bool(first) and bool(second) and first != second


def validate_uppercase(text: str) -> bool:
    """Letters present and none of them lowercase."""
    return any(char.isalpha() for char in text) and text == text.upper()


def validate_lowercase(text: str) -> bool:
    """Letters present and none of them uppercase."""
    return any(char.isalpha() for char in text) and text == text.lower()


def capital_word_count(text: str) -> int:
    """How many words are written entirely in capitals (``NASA``, ``I``)."""
    return sum(1 for word in words(text) if word.isupper())


def validate_frequency_capital_words(text: str, N, quantifier: str) -> bool:
    """All-capital words appear at least / around / at most N times."""
    return compare_count(capital_word_count(text), int(N), quantifier)


def validate_end(text: str, end_phrase: str) -> bool:
    """The response ends with ``end_phrase`` and nothing after it (trailing whitespace aside)."""
    phrase = end_phrase.strip()
    return bool(phrase) and text.strip().endswith(phrase)


def validate_quotation(text: str) -> bool:
    """The whole response is wrapped in double quotation marks."""
    body = text.strip()
    return len(body) > 1 and body[0] in "\"“" and body[-1] in "\"”"


def validate_no_commas(text: str) -> bool:
    """No comma anywhere (fullwidth and Arabic commas included)."""
    return not re.search(r"[,，、،]", text)


def _as_list(value) -> list:
    """A list argument that may arrive as a list, a Python/JSON literal string, or one plain string."""
    if isinstance(value, (list, tuple, set)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "([{":
            try:
                parsed = ast.literal_eval(text)  # literals only: this is ground truth, never model text
            except (ValueError, SyntaxError):
                parsed = None
            if isinstance(parsed, (list, tuple, set)):
                return list(parsed)
        return [text]
    return [value]


TULU_CHECKS = {
    function.__name__: function
    for function in (
        verify_keywords, verify_keyword_frequency, validate_forbidden_words, verify_letter_frequency,
        validate_response_language, verify_paragraph_count, validate_word_constraint,
        verify_sentence_constraint, validate_paragraphs, verify_postscript, validate_placeholders,
        verify_bullet_points, validate_title, validate_choice, validate_highlighted_sections,
        validate_sections, validate_json_format, validate_repeat_prompt, validate_two_responses,
        validate_uppercase, validate_lowercase, validate_frequency_capital_words, validate_end,
        validate_quotation, validate_no_commas,
    )
}
