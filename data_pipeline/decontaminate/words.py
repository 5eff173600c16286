"""Word tokenisation and uint64 word / n-gram hashes, in a plain and in a vectorised form.

The tokeniser: lowercase the text with ``str.lower``, then a word is a maximal run of letters
and digits, i.e. the regex ``[^\\W_]+`` (Unicode-aware: ``é``, ``ß``, ``٣`` are word characters;
punctuation, whitespace and ``_`` separate words). "Don't" is two words, ``don`` and ``t``.

``words`` is the readable reference; ``hash_batch`` gives the same words for many texts at once
as uint64 hashes computed with NumPy (no Python loop over words), which is what makes the
training-side scan fast. Tests hold the two to agreement on tricky Unicode.
"""

from __future__ import annotations

import functools
import re
from typing import Sequence

import numpy as np

WORD_PATTERN = re.compile(r"[^\W_]+")

# Odd multiplier (invertible modulo 2**32, so prefix sums can be shifted back by an inverse power).
_CHAR_BASE = 0x01000193
_CHAR_BASE_INVERSE = pow(_CHAR_BASE, -1, 2**32)
_MAX_CODE_POINT = 0x110000


def words(text: str) -> list[str]:
    """The lowercased words of ``text`` (maximal runs of Unicode letters and digits)."""
    return WORD_PATTERN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of ``tokens`` in order (empty when there are fewer than n tokens)."""
    return list(zip(*(tokens[offset:] for offset in range(n))))


@functools.cache
def _is_word_character() -> np.ndarray:
    """Lookup table over all code points: True where ``[^\\W_]`` matches (``str.isalnum``)."""
    table = np.zeros(_MAX_CODE_POINT, dtype=bool)
    ascii_alnum = [c for c in range(128) if chr(c).isalnum()]
    table[ascii_alnum] = True
    # Beyond ASCII, ask Python itself so the table agrees with the regex by construction.
    table[128:] = [chr(c).isalnum() for c in range(128, _MAX_CODE_POINT)]
    return table


class _PowerTable:
    """Powers base**k and base**-k modulo 2**32, grown on demand (shared by all scans)."""

    def __init__(self) -> None:
        self.powers = np.ones(1, dtype=np.uint32)
        self.inverse_powers = np.ones(1, dtype=np.uint32)

    def ensure(self, length: int) -> None:
        if len(self.powers) >= length:
            return
        size = max(length, 2 * len(self.powers))
        # cumprod on uint32 wraps modulo 2**32, which is the arithmetic we want.
        self.powers = self._powers_of(_CHAR_BASE, size)
        self.inverse_powers = self._powers_of(_CHAR_BASE_INVERSE, size)

    @staticmethod
    def _powers_of(base: int, size: int) -> np.ndarray:
        powers = np.empty(size, dtype=np.uint32)
        powers[0] = 1
        # Everything stays uint32: mixing in a Python int list would promote to a float and lose bits.
        np.cumprod(np.full(size - 1, base, dtype=np.uint32), out=powers[1:])
        return powers


_POWERS = _PowerTable()


def mix64(values: np.ndarray) -> np.ndarray:
    """A bijective scrambling of uint64 values (the splitmix64 finaliser), so hash bits spread evenly."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def hash_batch(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hash every word of every text: ``(word_hashes uint64 [words], word_text_index int64 [words])``.

    Words come in text order, the same words as ``words(text)`` for each text.
    """
    is_ascii = np.fromiter((text.isascii() for text in texts), dtype=bool, count=len(texts))
    if is_ascii.all() or not is_ascii.any():
        return _hash_group(texts, ascii_only=bool(is_ascii.all()))
    # ASCII texts take a 1-byte-per-character path; the rest go through UTF-32. Both hash a word
    # from its code points, so the same word gets the same hash on either path.
    ascii_texts, other_texts = np.flatnonzero(is_ascii), np.flatnonzero(~is_ascii)
    parts = [
        _hash_group([texts[i] for i in ascii_texts], ascii_only=True),
        _hash_group([texts[i] for i in other_texts], ascii_only=False),
    ]
    word_hashes = np.concatenate([parts[0][0], parts[1][0]])
    word_text_index = np.concatenate([ascii_texts[parts[0][1]], other_texts[parts[1][1]]])
    # Each text's words are contiguous and in order within a group: a stable sort restores text order.
    order = np.argsort(word_text_index, kind="stable")
    return word_hashes[order], word_text_index[order]


def _hash_group(texts: Sequence[str], ascii_only: bool) -> tuple[np.ndarray, np.ndarray]:
    if not texts:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    # "\n" is not a word character, so words never run across two texts.
    joined = "\n".join(texts).lower()
    if ascii_only:
        code_points = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    else:
        code_points = np.frombuffer(joined.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    # ASCII letters and digits by arithmetic (unsigned wrap-around makes "x - lo < width" a range test).
    is_word = ((code_points - code_points.dtype.type(97)) < 26) | ((code_points - code_points.dtype.type(48)) < 10)
    if not ascii_only:
        beyond_ascii = np.flatnonzero(code_points >= 128)
        is_word[beyond_ascii] = _is_word_character()[code_points[beyond_ascii]]
    padded = np.zeros(len(is_word) + 2, dtype=bool)
    padded[1:-1] = is_word
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    word_starts, word_ends = edges[0::2], edges[1::2]

    # Position-independent polynomial hash of each word modulo 2**32: prefix sums of c_j * B**j,
    # cut at the word's span and shifted back by B**-start (B is odd, hence invertible). The
    # word's length goes into the high half; 32-bit collisions between words are harmless since
    # every reported pair is confirmed on the words themselves.
    _POWERS.ensure(len(code_points) + 1)
    prefix = np.zeros(len(code_points) + 1, dtype=np.uint32)
    np.cumsum(np.multiply(code_points, _POWERS.powers[: len(code_points)], dtype=np.uint32), out=prefix[1:])
    fingerprint = (prefix[word_ends] - prefix[word_starts]) * _POWERS.inverse_powers[word_starts]
    lengths = (word_ends - word_starts).astype(np.uint64)
    word_hashes = mix64(fingerprint.astype(np.uint64) | (lengths << np.uint64(32)))

    # Python's len counts code points, exactly the units of the array.
    text_starts = np.cumsum([0] + [len(text) + 1 for text in texts[:-1]], dtype=np.int64)
    words_per_text = np.diff(np.searchsorted(word_starts, text_starts), append=len(word_starts))
    return word_hashes, np.repeat(np.arange(len(texts), dtype=np.int64), words_per_text)


def _ngram_multipliers(n: int) -> np.ndarray:
    """One odd multiplier per position in the n-gram, so word order changes the hash."""
    return mix64(np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)


def ngram_hashes(word_hashes: np.ndarray, word_text_index: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of the n-grams that lie inside one text.

    Returns ``(hashes uint64, text_index int64, first_word int64)`` per n-gram, where
    ``first_word`` indexes ``word_hashes`` (the global word position of the n-gram's first word).
    """
    count = len(word_hashes) - n + 1
    if count <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=np.uint64), empty, empty
    multipliers = _ngram_multipliers(n)
    combined = word_hashes[:count] * multipliers[0]
    for offset in range(1, n):
        combined = combined + word_hashes[offset : offset + count] * multipliers[offset]
    inside_one_text = word_text_index[:count] == word_text_index[n - 1 :]
    first_word = np.flatnonzero(inside_one_text)
    # Word hashes are already scrambled; multiplying by odd constants keeps the top bits (which
    # the index's prefilter reads) well spread, so no final scrambling pass is needed.
    return combined[first_word], word_text_index[first_word], first_word
