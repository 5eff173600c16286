"""IFEval at the boundaries of paragraph, sentence and word counts: 30 labelled cases, each with its reason.

Google-format cases go through ``evaluate_google`` (strict verdict of one instruction); Tülu-format cases
through ``rewards.score(..., "ifeval")``, the function RLVR uses.
"""

import json

import pytest

from tulu_jax import rewards
from tulu_jax.rewards.ifeval_google import evaluate_google

PARAGRAPHS = "length_constraints:number_paragraphs"
WORDS = "length_constraints:number_words"
SENTENCES = "length_constraints:number_sentences"
FIRST_WORD = "length_constraints:nth_paragraph_first_word"

GOOGLE_CASES = [
    ("The plan has **two** **parts** today.", PARAGRAPHS, {"num_paragraphs": 1}, True, "bold spans side by side are not a divider"),
    ("First.\n***\nSecond.", PARAGRAPHS, {"num_paragraphs": 2}, True, "one divider line, two paragraphs"),
    ("First.\n***\nSecond.", PARAGRAPHS, {"num_paragraphs": 1}, False, "two paragraphs are not one"),
    ("First.\n***\n\n***\nSecond.", PARAGRAPHS, {"num_paragraphs": 2}, False, "an empty paragraph between dividers"),
    ("***\nFirst.\n***\nSecond.\n***", PARAGRAPHS, {"num_paragraphs": 2}, True, "dividers at the ends add no paragraph"),
    ("First.\n  ***  \nSecond.", PARAGRAPHS, {"num_paragraphs": 2}, True, "a divider line with spaces around it"),
    ("This is ***very*** important.\n***\nNext.", PARAGRAPHS, {"num_paragraphs": 2}, True, "inline bold italics are not a divider"),
    ("First.\n* * *\nSecond.", PARAGRAPHS, {"num_paragraphs": 1}, True, "Google's divider is ***, not the Tülu * * *"),
    ("One.\n\nTwo.\n\nThree.", PARAGRAPHS, {"num_paragraphs": 3}, False, "blank lines do not divide Google paragraphs"),
    ("one two three four five", WORDS, {"num_words": 5, "relation": "less than"}, False, "five words are not fewer than five"),
    ("one two three four five", WORDS, {"num_words": 5, "relation": "at least"}, True, "five words are at least five"),
    ("It's a well-known fact.", WORDS, {"num_words": 5, "relation": "less than"}, True, "contractions and hyphenated words are one word each"),
    ("Sales reached 3.5 million units.", WORDS, {"num_words": 5, "relation": "at least"}, True, "a decimal number is one word"),
    ("Dr. Smith arrived. He sat down.", SENTENCES, {"num_sentences": 2, "relation": "less than"}, False, "an abbreviation does not end a sentence: two sentences"),
    ("Dr. Smith arrived. He sat down.", SENTENCES, {"num_sentences": 3, "relation": "less than"}, True, "two sentences are fewer than three"),
    ("Wait! Really? Yes.", SENTENCES, {"num_sentences": 3, "relation": "at least"}, True, "exclamation and question marks end sentences"),
    ("It costs 3.5 dollars. Done.", SENTENCES, {"num_sentences": 3, "relation": "less than"}, True, "a decimal point is not a sentence end"),
    ("Hello world", SENTENCES, {"num_sentences": 1, "relation": "at least"}, True, "an unpunctuated line is a sentence"),
    ("Alpha one.\n\nBeta two.", FIRST_WORD, {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "beta"}, True, "second paragraph starts with beta"),
    ("Alpha one.\n\nBeta two.", FIRST_WORD, {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "alpha"}, False, "the first paragraph's word is not the second's"),
    ("Alpha one.\n\n**Beta** two.", FIRST_WORD, {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "beta"}, True, "markup around the first word is not part of it"),
]

TULU_CASES = [
    ("A.\n* * *\nB.", {"func_name": "verify_paragraph_count", "N": 2}, True, "one * * * divider, two paragraphs"),
    ("A.\n* * *\n\n* * *\nB.", {"func_name": "verify_paragraph_count", "N": 2}, False, "an empty paragraph between dividers"),
    ("A **b** **c** d.", {"func_name": "verify_paragraph_count", "N": 1}, True, "bold spans are not a divider"),
    (" ".join(["word"] * 9), {"func_name": "validate_word_constraint", "N": 10, "quantifier": "around"}, True, "nine is within 10% of ten"),
    (" ".join(["word"] * 12), {"func_name": "validate_word_constraint", "N": 10, "quantifier": "around"}, False, "twelve is outside 10% of ten"),
    (" ".join(["word"] * 6), {"func_name": "validate_word_constraint", "N": 5, "quantifier": "at most"}, False, "six words exceed at most five"),
    ("Dr. Who came. He left.", {"func_name": "verify_sentence_constraint", "N": 2, "quantifier": "at most"}, True, "two sentences despite the abbreviation"),
    ("First.\n\n\n\nThen more.", {"func_name": "validate_paragraphs", "N": 2, "first_word": "then", "i": 2}, True, "several blank lines are one break"),
    ("First.\nThen more.", {"func_name": "validate_paragraphs", "N": 2, "first_word": "then", "i": 2}, False, "a single newline is not a paragraph break"),
]


def test_thirty_cases():
    assert len(GOOGLE_CASES) + len(TULU_CASES) >= 30


@pytest.mark.parametrize("response, instruction, kwargs, expected, reason", GOOGLE_CASES, ids=[c[-1] for c in GOOGLE_CASES])
def test_google_boundaries(response, instruction, kwargs, expected, reason):
    record = {"instruction_id_list": [instruction], "kwargs": [kwargs]}
    assert evaluate_google(response, record).strict == (expected,), reason


@pytest.mark.parametrize("response, constraint, expected, reason", TULU_CASES, ids=[c[-1] for c in TULU_CASES])
def test_tulu_boundaries(response, constraint, expected, reason):
    assert rewards.score(response, json.dumps(constraint), "ifeval") == float(expected), reason
