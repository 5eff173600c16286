"""Word tokenisation and uint64 word / n-gram hashes, in a plain and in a vectorised form.

The tokeniser: lowercase the text with ``str.lower``, then a word is a maximal run of letters
and digits, i.e. the regex ``[^\\W_]+`` (Unicode-aware: ``é``, ``ß``, ``٣`` are word characters;
punctuation, whitespace and ``_`` separate words). "Don't" is two words, ``don`` and ``t``.

``words`` is the readable reference; ``hash_texts`` gives the same words for many texts at once
as uint64 values computed with NumPy (no Python loop over words or characters), which is what
makes the training-side scan fast. Tests hold the two to agreement on tricky Unicode.

A word's value is built from its lowercased UTF-8 bytes read eight at a time: a word of fewer
than eight bytes IS its value (bytes packed little-endian, zero-padded; a word never contains a
zero byte), longer words fold in further 8-byte pieces. Both the ASCII and the Unicode path read
UTF-8 bytes, so a word gets the same value on either.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

WORD_PATTERN = re.compile(r"[^\W_]+")

_MAX_CODE_POINT = 0x110000
_PIECE_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
# Odd, so invertible modulo 2**64: prefix sums of word values can be shifted back by an inverse power.
_NGRAM_BASE = 0xD6E8FEB86659FD93
_NGRAM_BASE_INVERSE = pow(_NGRAM_BASE, -1, 2**64)


def words(text: str) -> list[str]:
    """The lowercased words of ``text`` (maximal runs of Unicode letters and digits)."""
    return WORD_PATTERN.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """The n-grams of ``tokens`` in order (empty when there are fewer than n tokens)."""
    return list(zip(*(tokens[offset:] for offset in range(n))))


@dataclass(frozen=True)
class HashedTexts:
    """The words of a batch of texts: ``values`` uint64 [words] in text order; text t's words are
    ``values[text_first_word[t] : text_first_word[t + 1]]``."""

    values: np.ndarray
    text_first_word: np.ndarray  # int64 [texts + 1]

    def text_of_word(self, word: np.ndarray) -> np.ndarray:
        """The text each (global) word position belongs to."""
        return np.searchsorted(self.text_first_word, word, side="right") - 1

    def ngram_fits(self, first_word: np.ndarray, n: int) -> np.ndarray:
        """True where the n words from ``first_word`` on all lie in the same text."""
        return first_word + n <= self.text_first_word[self.text_of_word(first_word) + 1]

    def word_text_index(self) -> np.ndarray:
        """The text of every word, int64 [words]."""
        return np.repeat(np.arange(len(self.text_first_word) - 1, dtype=np.int64), np.diff(self.text_first_word))


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
    """Powers base**k and base**-k modulo 2**64, grown on demand and shared by all scans (and threads)."""

    def __init__(self) -> None:
        self._tables = (np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64))

    def at_least(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """``(powers, inverse_powers)`` with at least ``length`` entries each."""
        tables = self._tables  # one read: a thread growing the tables replaces both at once
        if len(tables[0]) >= length:
            return tables
        size = max(length, 2 * len(tables[0]))
        tables = (self._powers_of(_NGRAM_BASE, size), self._powers_of(_NGRAM_BASE_INVERSE, size))
        self._tables = tables
        return tables

    @staticmethod
    def _powers_of(base: int, size: int) -> np.ndarray:
        powers = np.empty(size, dtype=np.uint64)
        powers[0] = 1
        # cumprod on uint64 wraps modulo 2**64, which is the arithmetic we want; everything stays
        # uint64 (a Python int mixed in would promote to a float and lose bits).
        np.cumprod(np.full(size - 1, base, dtype=np.uint64), out=powers[1:])
        return powers


_POWERS = _PowerTable()


def mix64(values: np.ndarray) -> np.ndarray:
    """A bijective scrambling of uint64 values (the splitmix64 finaliser), so hash bits spread evenly."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(0xBF58476D1CE4E5B9)
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def hash_texts(texts: Sequence[str]) -> HashedTexts:
    """The word values of every text, in text order (the same words as ``words(text)`` per text)."""
    joined = "\n".join(texts)  # "\n" is not a word character, so words never run across two texts
    if joined.isascii():
        word_bytes, is_word, text_starts = _ascii_bytes(joined, texts)
    else:
        word_bytes, is_word, text_starts = _unicode_bytes(joined, texts)
    word_starts = np.flatnonzero(is_word[1:] > is_word[:-1]) + 1  # a word byte after a non-word byte
    if len(is_word) and is_word[0]:
        word_starts = np.concatenate([[0], word_starts])
    values = _word_values(word_bytes, word_starts)
    text_first_word = np.append(np.searchsorted(word_starts, text_starts), len(values)).astype(np.int64)
    return HashedTexts(values, text_first_word)


def _padded(size: int, dtype) -> np.ndarray:
    """A zeroed buffer of ``size + 8`` elements: 8-byte windows starting anywhere in the first ``size`` stay inside."""
    return np.zeros(size + 8, dtype=dtype)


def _ascii_bytes(joined: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(word_bytes, is_word, text_starts)``: the lowercased bytes with every non-word byte 0 and the
    word flags (both padded), and the first byte of each text."""
    raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    # Letters and digits all have bit 0x20 set once lowercased, so OR-ing it in lowercases every
    # byte that ends up inside a word (the others are zeroed below).
    word_bytes = _padded(len(raw), np.uint8)
    np.bitwise_or(raw, np.uint8(0x20), out=word_bytes[: len(raw)])
    # Unsigned wrap-around makes "x - lo < width" a range test.
    is_word = _padded(len(raw), bool)
    np.logical_or((word_bytes[: len(raw)] - np.uint8(97)) < 26, (raw - np.uint8(48)) < 10, out=is_word[: len(raw)])
    word_bytes *= is_word
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)) + 1
    text_starts = np.zeros(len(texts), dtype=np.int64)
    np.cumsum(lengths[:-1], out=text_starts[1:])
    return word_bytes, is_word, text_starts


def _unicode_bytes(joined: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As :func:`_ascii_bytes` for text with any code point, lowercased with ``str.lower``."""
    lowered = joined.lower()
    code_points = np.frombuffer(lowered.encode("utf-32-le", errors="surrogatepass"), dtype=np.uint32)
    is_word_character = ((code_points - np.uint32(97)) < 26) | ((code_points - np.uint32(48)) < 10)
    beyond_ascii = np.flatnonzero(code_points >= 128)
    is_word_character[beyond_ascii] = _is_word_character()[code_points[beyond_ascii]]
    # Each code point's UTF-8 length spreads its word flag over its bytes.
    byte_lengths = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)
    encoded = np.frombuffer(lowered.encode("utf-8", errors="surrogatepass"), dtype=np.uint8)
    word_bytes, is_word = _padded(len(encoded), np.uint8), _padded(len(encoded), bool)
    is_word[: len(encoded)] = np.repeat(is_word_character, byte_lengths)
    np.multiply(encoded, is_word[: len(encoded)], out=word_bytes[: len(encoded)])
    # Text boundaries move with str.lower (it may lengthen a text), so find them from the
    # "\n" separators of the lowered string rather than from the original lengths.
    text_starts = np.concatenate([[0], np.flatnonzero(encoded == 10) + 1]).astype(np.int64)
    if len(text_starts) != len(texts):
        # A text containing "\n" itself: lower the texts one by one for the offsets.
        byte_counts = [len(text.lower().encode("utf-8", errors="surrogatepass")) + 1 for text in texts]
        text_starts = np.cumsum([0] + byte_counts[:-1], dtype=np.int64)
    return word_bytes, is_word, text_starts


def _windows(padded: np.ndarray) -> np.ndarray:
    """Every byte offset of a padded buffer as the start of a little-endian 8-byte window (an unaligned view)."""
    return np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))


_LOW_BIT_OF_EACH_BYTE = np.uint64(0x0101010101010101)
_HIGH_BIT_OF_EACH_BYTE = np.uint64(0x8080808080808080)


def _word_values(word_bytes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Fold each word's bytes, read eight at a time, into a uint64 (exact for words of < 8 bytes).

    Non-word bytes are 0 in ``word_bytes``, so the lowest zero byte of a window ends the word and
    the bytes below it are kept; a window without a zero byte continues 8 bytes further on.
    """
    byte_windows = _windows(word_bytes)

    def piece_at(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        window = byte_windows[positions]
        # The classic "has a zero byte" test: the high bit of the lowest zero byte is exact (bits
        # above it may be spurious, and are never read); 0 when all eight bytes are word bytes.
        zero_bytes = (window - _LOW_BIT_OF_EACH_BYTE) & ~window & _HIGH_BIT_OF_EACH_BYTE
        first_zero = zero_bytes & (~zero_bytes + np.uint64(1))
        keep = (first_zero >> np.uint64(7)) - np.uint64(1)  # the bytes below it; 0 - 1 wraps to all ones
        return window & keep, first_zero == 0

    values, goes_on = piece_at(starts)
    pending = np.flatnonzero(goes_on)  # words with bytes still to read
    offset = 8
    while len(pending):
        piece, goes_on = piece_at(starts[pending] + offset)
        values[pending] = mix64(values[pending] + np.uint64(offset)) * _PIECE_MULTIPLIER + piece
        pending = pending[goes_on]
        offset += 8
    return values


def rolling_ngram_hashes(values: np.ndarray, n: int) -> np.ndarray:
    """Hash of the n words starting at every position (``len(values) - n + 1`` of them, across texts too).

    The hash of words w_i..w_{i+n-1} is sum_k w_{i+k} B**(k+1) modulo 2**64, computed for all positions
    at once from prefix sums of w_j B**(j+1) shifted back by B**-i. Every word is multiplied by a power
    of the odd constant B, so the top bits (which the index's prefilter and buckets read) depend on
    all the bits of every word.
    """
    count = len(values) - n + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    powers, inverse_powers = _POWERS.at_least(len(values) + 1)
    prefix = np.empty(len(values) + 1, dtype=np.uint64)
    prefix[0] = 0
    np.multiply(values, powers[1 : len(values) + 1], out=prefix[1:])
    np.cumsum(prefix[1:], out=prefix[1:])
    hashes = prefix[n:] - prefix[:count]
    hashes *= inverse_powers[:count]
    return hashes


def ngram_hashes(hashed: HashedTexts, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes of the n-grams that lie inside one text.

    Returns ``(hashes uint64, text_index int64, first_word int64)`` per n-gram, where
    ``first_word`` is the global word position of the n-gram's first word.
    """
    every = rolling_ngram_hashes(hashed.values, n)
    first_word = np.flatnonzero(hashed.ngram_fits(np.arange(len(every)), n))
    return every[first_word], hashed.text_of_word(first_word), first_word
