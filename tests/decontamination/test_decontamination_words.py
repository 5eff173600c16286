"""The vectorised word hashes agree with the documented regex tokeniser."""

import numpy as np
import pytest

from data_pipeline.decontaminate.words import hash_batch, ngram_hashes, words
from tests.decontamination.decontamination_reference import reference_words

TRICKY_TEXTS = [
    "Janet’s ducks lay 16 eggs per day. She eats three for breakfast!",
    "Don't STOP: snake_case, CamelCase, e-mail, 3.14, $2,000",
    "café Straße naïve ÉTÉ İstanbul ΣΟΦΟΣ ٣٤ 中文字 emoji 🙂 done",
    "",
    "   \n\t  ",
    "x",
    "tabs\tand\nnew\r\nlines   and    spaces",
    "combining e\u0301 marks and \u00a0no-break\u2003em space",
]


def test_tokeniser_examples_by_hand():
    assert words("Don't STOP: snake_case, 3.14") == ["don", "t", "stop", "snake", "case", "3", "14"]
    assert words("Café ÉTÉ") == ["café", "été"]
    assert words("  ") == []


@pytest.mark.parametrize("shuffle_seed", [0, 1, 2])
def test_hash_batch_gives_the_same_words_as_the_regex(shuffle_seed):
    texts = list(TRICKY_TEXTS)
    np.random.default_rng(shuffle_seed).shuffle(texts)
    word_hashes, word_text = hash_batch(texts)
    expected = [(t, word) for t, text in enumerate(texts) for word in reference_words(text)]
    assert len(word_hashes) == len(expected)
    assert word_text.tolist() == [t for t, _ in expected]
    # Equal words hash equal wherever they are; different words hash differently.
    hash_of = {}
    for value, (_, word) in zip(word_hashes.tolist(), expected):
        assert hash_of.setdefault(word, value) == value
    assert len(set(hash_of.values())) == len(hash_of)


def test_word_hash_does_not_depend_on_position_or_batch():
    alone, _ = hash_batch(["miles"])
    in_batch, _ = hash_batch(["a plane travels 1200 miles", "then miles and miles"])
    assert set(in_batch[[4, 6, 8]].tolist()) == {alone[0]}


def test_ngrams_never_cross_texts_and_follow_word_order():
    word_hashes, word_text = hash_batch(["a b c", "d e f g"])
    hashes, text_index, first_word = ngram_hashes(word_hashes, word_text, 3)
    assert text_index.tolist() == [0, 1, 1]
    assert first_word.tolist() == [0, 3, 4]
    forward, _ = hash_batch(["a b c"])
    backward, _ = hash_batch(["c b a"])
    assert ngram_hashes(forward, np.zeros(3, np.int64), 3)[0] != ngram_hashes(backward, np.zeros(3, np.int64), 3)[0]


def test_ascii_and_unicode_paths_hash_a_word_alike():
    """An ASCII prompt and a prompt with a curly quote take different paths but must share 8-grams."""
    ascii_text = "she sells sea shells by the sea shore every day"
    unicode_text = "“she sells sea shells by the sea shore every day”"
    (mixed, mixed_text), (alone, _) = hash_batch([ascii_text, unicode_text]), hash_batch([unicode_text])
    assert mixed_text.tolist() == [0] * 10 + [1] * 10
    assert mixed[:10].tolist() == mixed[10:].tolist() == alone.tolist()
