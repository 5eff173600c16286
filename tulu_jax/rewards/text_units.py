"""Words, sentences and paragraphs as a reader counts them, shared by the instruction-following checks."""

from __future__ import annotations

import re

# A word: letters/digits with inner apostrophes or hyphens ("don't", "well-known" are one word each).
_WORD = re.compile(r"\w+(?:['’-]\w+|(?<=\d)[.,]\d+)*")
# Abbreviations whose period does not end a sentence.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "eg", "ie", "no", "fig",
    "inc", "ltd", "co", "u.s", "a.m", "p.m", "approx", "dept", "est", "mt", "jan", "feb", "mar", "apr",
    "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}
# End punctuation (with closing quotes/brackets) followed by whitespace or the end.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)")


def words(text: str) -> list[str]:
    """The words of ``text`` (punctuation and markup dropped)."""
    return _WORD.findall(text)


def count_whole_word(text: str, phrase: str) -> int:
    """How many times ``phrase`` occurs as whole words, case-insensitively ("cat" not in "concatenate")."""
    phrase = phrase.strip()
    if not phrase:
        return 0
    pattern = r"(?<!\w)" + r"\s+".join(re.escape(part) for part in phrase.split()) + r"(?!\w)"
    return len(re.findall(pattern, text, flags=re.IGNORECASE))


# Longer than any abbreviation or initial: how far back the token before a period is read (keeps the
# sentence split linear in the text's length).
_TOKEN_LOOKBACK = 32


def _token_before(text: str, end: int) -> str:
    """The run of word characters and periods that ends at ``end`` (its last ``_TOKEN_LOOKBACK`` characters)."""
    start = end
    while start > 0 and end - start < _TOKEN_LOOKBACK and (text[start - 1] in "._" or text[start - 1].isalnum()):
        start -= 1
    return text[start:end]


def _ends_sentence(text: str, match: re.Match) -> bool:
    """False for the period of an abbreviation or an initial ("Dr. Smith", "J. R. R. Tolkien")."""
    if not match.group(0).startswith("."):
        return True
    token = _token_before(text, match.start()).lower()
    if not token:
        return True
    if token in _ABBREVIATIONS:
        return False
    return not (len(token) == 1 and token.isalpha() and text[match.start() - 1].isupper())


def sentences(text: str) -> list[str]:
    """Sentences split at ``.``, ``!``, ``?`` (not abbreviations or decimals) and at line breaks.

    A line break ends a sentence because models do not hard-wrap prose: a line is a heading, a list item
    or the end of a paragraph.
    """
    found = []
    for block in text.split("\n"):
        start = 0
        for match in _SENTENCE_END.finditer(block):
            if _ends_sentence(block, match):
                found.append(block[start : match.end()])
                start = match.end()
        found.append(block[start:])
    return [sentence.strip() for sentence in found if re.search(r"\w", sentence)]


def paragraphs_by_blank_lines(text: str) -> list[str]:
    """Paragraphs separated by one or more blank lines, empty ones dropped."""
    return [part.strip() for part in re.split(r"\n\s*\n", text.strip()) if part.strip()]


def compare_count(actual: int, expected: int, relation: str) -> bool:
    """``actual`` against ``expected`` under a relation: at least / at most / around (±10%, min 1) /
    less than / exactly. Unknown relations are a ``ValueError`` (a data problem, not a model failure)."""
    relation = relation.strip().lower()
    if relation == "at least":
        return actual >= expected
    if relation == "at most":
        return actual <= expected
    if relation == "less than":
        return actual < expected
    if relation in ("exactly", "equal to"):
        return actual == expected
    if relation == "around":
        return abs(actual - expected) <= max(round(expected * 0.1), 1)
    raise ValueError(f"unknown relation {relation!r}; expected at least, at most, around, less than or exactly")
