"""The vectorised word hashes agree with the documented regex tokeniser."""

import numpy as np
import pytest

from data_pipeline.decontaminate.words import hash_texts, ngram_hashes, rolling_ngram_hashes, words
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
def test_hash_texts_gives_the_same_words_as_the_regex(shuffle_seed):
    texts = list(TRICKY_TEXTS)
    np.random.default_rng(shuffle_seed).shuffle(texts)
    hashed = hash_texts(texts)
    word_hashes, word_text = hashed.values, hashed.word_text_index()
    expected = [(t, word) for t, text in enumerate(texts) for word in reference_words(text)]
    assert len(word_hashes) == len(expected)
    assert word_text.tolist() == [t for t, _ in expected]
    # Equal words hash equal wherever they are; different words hash differently.
    hash_of = {}
    for value, (_, word) in zip(word_hashes.tolist(), expected):
        assert hash_of.setdefault(word, value) == value
    assert len(set(hash_of.values())) == len(hash_of)


def test_word_hash_does_not_depend_on_position_or_batch():
    alone = hash_texts(["miles"]).values
    in_batch = hash_texts(["a plane travels 1200 miles", "then miles and miles"]).values
    assert set(in_batch[[4, 6, 8]].tolist()) == {alone[0]}


def test_ngrams_never_cross_texts_and_follow_word_order():
    hashes, text_index, first_word = ngram_hashes(hash_texts(["a b c", "d e f g"]), 3)
    assert text_index.tolist() == [0, 1, 1]
    assert first_word.tolist() == [0, 3, 4]
    forward = ngram_hashes(hash_texts(["a b c"]), 3)[0]
    backward = ngram_hashes(hash_texts(["c b a"]), 3)[0]
    assert len(forward) == len(backward) == 1 and forward[0] != backward[0]


def test_rolling_ngram_hash_is_the_hash_of_the_words_alone():
    """The prefix-sum shortcut gives every n-gram the value it has when hashed on its own."""
    text = "one two three four five six seven eight nine ten eleven twelve"
    every = rolling_ngram_hashes(hash_texts([text]).values, 8)
    alone = [rolling_ngram_hashes(hash_texts([" ".join(text.split()[i : i + 8])]).values, 8)[0] for i in range(5)]
    assert every.tolist() == alone


def test_long_words_are_told_apart_beyond_their_first_eight_bytes():
    texts = ["internationalisation internationalization", "abcdefgh abcdefghabcdefgh abcdefghabcdefghx"]
    values = hash_texts(texts).values.tolist()
    assert len(set(values)) == 5
    assert hash_texts(["Internationalisation"]).values[0] == values[0]


def test_ascii_and_unicode_paths_hash_a_word_alike():
    """An ASCII prompt and a prompt with a curly quote take different paths but must share 8-grams."""
    ascii_text = "she sells sea shells by the sea shore every day"
    unicode_text = "“she sells sea shells by the sea shore every day”"
    mixed, alone = hash_texts([ascii_text, unicode_text]), hash_texts([unicode_text]).values
    mixed, mixed_text = mixed.values, mixed.word_text_index()
    assert mixed_text.tolist() == [0] * 10 + [1] * 10
    assert mixed[:10].tolist() == mixed[10:].tolist() == alone.tolist()
