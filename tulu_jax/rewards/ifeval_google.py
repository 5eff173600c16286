"""Google's IFEval format (``instruction_id_list`` + ``kwargs``), strict and loose.

Each instruction id maps to a check with the official IFEval meaning (relations "less than" / "at least",
"at least N sections", language checks that pass when the language cannot be determined). Loose
evaluation also tries the response with its first line, last line or both removed, each with and without
``*``; any passing variant counts.

Where the official code misreads its own instruction, we deliberately read it differently:
- Keywords match as whole words: "cat" is not found in "concatenate" (the official ``re.search`` finds it).
- Words are counted as a reader counts them: "It's a well-known fact." is 4 words (the official ``\w+``
  tokenizer counts 6: it, s, a, well, known, fact), and "3.5" is one word.
- Sentences end at ``.``, ``!``, ``?`` and line breaks, not at abbreviations or decimal points:
  "Dr. Smith arrived. He sat down." is 2 sentences.
- "No commas" also forbids the CJK and Arabic commas: "你好，世界" has a comma (the official code looks
  only for ``,``).
- Paragraphs are divided only by a line that is ``***`` (spaces around it allowed), the markdown divider
  the instruction asks for: "This is ***very*** important." is one paragraph, where the official
  ``\s?\*\*\*\s?`` split makes three. As in the official code, ``**two** **parts**`` is one paragraph,
  dividers at the start or end add none, and an empty paragraph between two dividers fails.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tulu_jax.rewards.ifeval_checks import (
    IfevalGroundTruthError,
    capital_word_count,
    validate_forbidden_words,
    validate_json_format,
    validate_no_commas,
    validate_two_responses,
    verify_keywords,
)
from tulu_jax.rewards.language import is_language
from tulu_jax.rewards.text_units import compare_count, count_whole_word, paragraphs_by_blank_lines, sentences, words


def _language_or_pass(text: str, code: str) -> bool:
    verdict = is_language(text, code)
    return True if verdict is None else verdict


# A divider line: "***" alone on its line (one regex attempt per line start, so linear).
_DIVIDER_LINE = re.compile(r"^[ \t]*\*\*\*[ \t]*$", re.MULTILINE)


def _number_paragraphs(text: str, num_paragraphs) -> bool:
    parts = _DIVIDER_LINE.split(text)
    count = len(parts)
    for index, part in enumerate(parts):
        if not part.strip():
            if index in (0, len(parts) - 1):
                count -= 1
            else:
                return False
    return count == int(num_paragraphs)


def _nth_paragraph_first_word(text: str, num_paragraphs, nth_paragraph, first_word) -> bool:
    paragraphs = paragraphs_by_blank_lines(text)
    nth = int(nth_paragraph)
    if len(paragraphs) != int(num_paragraphs) or not 1 <= nth <= len(paragraphs):
        return False
    first = words(paragraphs[nth - 1])
    return bool(first) and first[0].lower() == str(first_word).strip().lower()


def _postscript(text: str, postscript_marker: str) -> bool:
    marker = postscript_marker.strip().lower()
    if marker == "p.p.s":
        pattern = r"\s*p\.\s?p\.\s?s.*$"
    elif marker == "p.s.":
        pattern = r"\s*p\.\s?s\..*$"
    else:
        pattern = r"\s*" + re.escape(marker) + r".*$"
    return bool(re.findall(pattern, text.lower(), flags=re.MULTILINE))


def _bullet_lists(text: str, num_bullets) -> bool:
    stars = re.findall(r"^\s*\*[^\*].*$", text, flags=re.MULTILINE)
    dashes = re.findall(r"^\s*-.*$", text, flags=re.MULTILINE)
    return len(stars) + len(dashes) == int(num_bullets)


def _highlighted_sections(text: str, num_highlights) -> bool:
    single = [h for h in re.findall(r"\*[^\n\*]*\*", text) if h.strip("*").strip()]
    double = [h for h in re.findall(r"\*\*[^\n\*]*\*\*", text) if h[2:-2].strip()]
    return len(single) + len(double) >= int(num_highlights)


def _multiple_sections(text: str, section_spliter: str, num_sections) -> bool:
    pattern = r"\s?" + re.escape(section_spliter.strip()) + r"\s?\d+\s?"
    return len(re.split(pattern, text)) - 1 >= int(num_sections)


def _title(text: str) -> bool:
    return any(title.lstrip("<").rstrip(">").strip() for title in re.findall(r"<<[^\n]+>>", text))


def _end_checker(text: str, end_phrase: str) -> bool:
    return text.strip().strip('"').lower().endswith(end_phrase.strip().lower())


def _quotation(text: str) -> bool:
    body = text.strip()
    return len(body) > 1 and body[0] == '"' and body[-1] == '"'


GOOGLE_CHECKS = {
    "keywords:existence": lambda text, keywords: verify_keywords(text, keywords),
    "keywords:frequency": lambda text, keyword, frequency, relation: compare_count(
        count_whole_word(text, keyword), int(frequency), relation
    ),
    "keywords:forbidden_words": lambda text, forbidden_words: validate_forbidden_words(text, forbidden_words),
    "keywords:letter_frequency": lambda text, letter, let_frequency, let_relation: compare_count(
        text.lower().count(letter.lower()), int(let_frequency), let_relation
    ),
    "language:response_language": lambda text, language: _language_or_pass(text, language),
    "length_constraints:number_sentences": lambda text, num_sentences, relation: compare_count(
        len(sentences(text)), int(num_sentences), relation
    ),
    "length_constraints:number_paragraphs": _number_paragraphs,
    "length_constraints:number_words": lambda text, num_words, relation: compare_count(
        len(words(text)), int(num_words), relation
    ),
    "length_constraints:nth_paragraph_first_word": _nth_paragraph_first_word,
    "detectable_content:number_placeholders": lambda text, num_placeholders: len(re.findall(r"\[.*?\]", text))
    >= int(num_placeholders),
    "detectable_content:postscript": _postscript,
    "detectable_format:number_bullet_lists": _bullet_lists,
    "detectable_format:constrained_response": lambda text: any(
        option in text.strip() for option in ("My answer is yes.", "My answer is no.", "My answer is maybe.")
    ),
    "detectable_format:number_highlighted_sections": _highlighted_sections,
    "detectable_format:multiple_sections": _multiple_sections,
    "detectable_format:json_format": lambda text: validate_json_format(text),
    "detectable_format:title": _title,
    "combination:two_responses": lambda text: validate_two_responses(text),
    "combination:repeat_prompt": lambda text, prompt_to_repeat: text.strip().lower().startswith(
        prompt_to_repeat.strip().lower()
    ),
    "startend:end_checker": _end_checker,
    "startend:quotation": _quotation,
    "change_case:capital_word_frequency": lambda text, capital_frequency, capital_relation: compare_count(
        capital_word_count(text), int(capital_frequency), capital_relation
    ),
    "change_case:english_capital": lambda text: text.isupper() and _language_or_pass(text, "en"),
    "change_case:english_lowercase": lambda text: text.islower() and _language_or_pass(text, "en"),
    "punctuation:no_comma": lambda text: validate_no_commas(text),
}


@dataclass(frozen=True)
class GoogleResult:
    """Per-instruction verdicts for one IFEval prompt, strict and loose."""

    instruction_ids: tuple[str, ...]
    strict: tuple[bool, ...]
    loose: tuple[bool, ...]

    @property
    def strict_fraction(self) -> float:
        return sum(self.strict) / len(self.strict) if self.strict else 0.0

    @property
    def loose_fraction(self) -> float:
        return sum(self.loose) / len(self.loose) if self.loose else 0.0

    @property
    def prompt_strict(self) -> bool:
        return bool(self.strict) and all(self.strict)

    @property
    def prompt_loose(self) -> bool:
        return bool(self.loose) and all(self.loose)


def loose_variants(response: str) -> list[str]:
    """The response, without its first line, last line, or both; each also with ``*`` removed."""
    lines = response.split("\n")
    base = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return base + [variant.replace("*", "") for variant in base]


def _check(instruction_id: str, text: str, arguments: dict) -> bool:
    return bool(text.strip()) and bool(GOOGLE_CHECKS[instruction_id](text, **arguments))


def evaluate_google(response: str, record: dict) -> GoogleResult:
    """Judge ``response`` against a Google IFEval record (``instruction_id_list``, ``kwargs``)."""
    instruction_ids = record.get("instruction_id_list")
    kwargs_list = record.get("kwargs") or [{} for _ in instruction_ids or []]
    if isinstance(kwargs_list, str):
        kwargs_list = json.loads(kwargs_list)
    if not isinstance(instruction_ids, list) or len(kwargs_list) != len(instruction_ids):
        raise IfevalGroundTruthError(
            "an IFEval record needs 'instruction_id_list' (a list) and 'kwargs' (a list of the same length)"
        )
    variants = loose_variants(response)
    strict, loose = [], []
    for instruction_id, kwargs in zip(instruction_ids, kwargs_list):
        if instruction_id not in GOOGLE_CHECKS:
            raise IfevalGroundTruthError(
                f"unknown IFEval instruction id {instruction_id!r}; supported: {', '.join(sorted(GOOGLE_CHECKS))}"
            )
        arguments = {key: value for key, value in (kwargs or {}).items() if value is not None}
        try:
            strict.append(_check(instruction_id, response, arguments))
            loose.append(any(_check(instruction_id, variant, arguments) for variant in variants))
        except TypeError as error:
            raise IfevalGroundTruthError(f"IFEval instruction {instruction_id} got arguments {sorted(arguments)}: {error}") from None
    return GoogleResult(tuple(instruction_ids), tuple(strict), tuple(loose))
