"""The 25 Tülu IFEval-style checks, each with a passing and a failing response, through the public API."""

import json

import pytest

from tulu_jax import rewards
from tulu_jax.rewards.ifeval_checks import TULU_CHECKS

ENGLISH = "The quick brown fox jumps over the lazy dog. It was a sunny day and everyone was happy about it."

# (func_name, kwargs, passing response, failing response)
CASES = [
    ("verify_keywords", {"keyword_list": ["apple", "green tea"]}, "An Apple with green  tea.", "A pineapple with tea."),
    ("verify_keyword_frequency", {"word": "cat", "N": 2}, "Cat and cat, not concatenate.", "cat cat cat"),
    ("validate_forbidden_words", {"forbidden_words": ["bad", "evil"]}, "Badminton is good.", "That was BAD."),
    ("verify_letter_frequency", {"letter": "q", "N": 2}, "Quick quack.", "quiet"),
    ("validate_response_language", {"language": "fr"},
     "Bonjour, je suis très content de vous voir aujourd'hui, mon ami.", ENGLISH),
    ("verify_paragraph_count", {"N": 2}, "First part.\n* * *\nSecond part.", "First.\n* * *\n\n* * *\nThird."),
    ("validate_word_constraint", {"N": 10, "quantifier": "at least"}, ENGLISH, "Too short."),
    ("validate_word_constraint", {"N": 10, "quantifier": "around"}, "one two three four five six seven eight nine ten eleven", ENGLISH),
    ("validate_word_constraint", {"N": 5, "quantifier": "at most"}, "Just four words here.", ENGLISH),
    ("verify_sentence_constraint", {"N": 3, "quantifier": "at least"}, "One! Two? Three.", "Dr. Smith arrived. Then left."),
    ("verify_sentence_constraint", {"N": 2, "quantifier": "at most"}, "It cost 3.5 dollars. Done!", "A. B! C? D."),
    ("validate_paragraphs", {"N": 2, "first_word": "second", "i": 2}, "First para.\n\nSecond para.", "First para.\n\nThird para."),
    ("verify_postscript", {"postscript_marker": "P.S."}, "Hello.\n\nP.S. See you soon.", "Hello. P.S."),
    ("validate_placeholders", {"N": 2}, "Dear [name], at [address].", "Dear [name], at []."),
    ("verify_bullet_points", {"N": 2}, "Intro\n* one\n- two\n**Bold** text", "* one\n* two\n* three"),
    ("validate_title", {}, "<<A Poem of Joy>>\nLines.", "A Poem of Joy\nLines."),
    ("validate_choice", {"options": "('My answer is yes.', 'My answer is no.', 'My answer is maybe.')"},
     "My answer is no.", "I think yes."),
    ("validate_highlighted_sections", {"N": 2}, "*first* and **second**", "*only one* here"),
    ("validate_sections", {"N": 2, "section_splitter": "Section"}, "Section 1\nA\nSection 2\nB", "Section 1\nA"),
    ("validate_json_format", {}, '```json\n{"a": 1}\n```', "{'a': 1}"),
    ("validate_repeat_prompt", {"original_prompt": "Write a poem."}, "Write a poem. Roses are red.", "Sure! Write a poem."),
    ("validate_two_responses", {}, "Answer one.\n******\nAnswer two.", "Same.\n******\nSame."),
    ("validate_uppercase", {}, "HELLO WORLD 42!", "HELLO World"),
    ("validate_lowercase", {}, "hello world 42!", "hello World"),
    ("validate_frequency_capital_words", {"N": 2, "quantifier": "at least"}, "NASA and ESA agree.", "Nasa and ESA agree."),
    ("validate_frequency_capital_words", {"N": 1, "quantifier": "at most"}, "Only NASA here.", "NASA and ESA agree."),
    ("validate_end", {"end_phrase": "Any other questions?"}, "Done. Any other questions?  ", "Any other questions? Bye."),
    ("validate_quotation", {}, '"Wrapped in quotes."', 'Not "wrapped".'),
    ("validate_no_commas", {}, "No commas at all.", "Well, there is one."),
]


def _ground_truth(name, kwargs):
    # Tülu data carries argument names with nulls for the unused ones; nulls must be dropped.
    unused = {key: None for key in ("N", "quantifier", "end_phrase") if key not in kwargs}
    return json.dumps({"func_name": name, **unused, **kwargs})


def test_every_check_is_covered():
    assert {case[0] for case in CASES} == set(TULU_CHECKS)
    assert len(TULU_CHECKS) == 25


@pytest.mark.parametrize("name, kwargs, passing, failing", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_check_passes_and_fails(name, kwargs, passing, failing):
    truth = _ground_truth(name, kwargs)
    assert rewards.score(passing, truth, "ifeval") == 1.0
    assert rewards.score(failing, truth, "ifeval") == 0.0


@pytest.mark.parametrize("name", sorted(TULU_CHECKS))
def test_checks_return_real_booleans_on_empty_response(name):
    kwargs = next(case[1] for case in CASES if case[0] == name)
    result = TULU_CHECKS[name]("", **kwargs)
    assert isinstance(result, bool)


def test_malformed_ground_truth_is_a_clear_error():
    with pytest.raises(rewards.IfevalGroundTruthError, match="not JSON"):
        rewards.score("x", "{not json", "ifeval")
    with pytest.raises(rewards.IfevalGroundTruthError, match="unknown ifeval func_name"):
        rewards.score("x", json.dumps({"func_name": "no_such_check"}), "ifeval")
    with pytest.raises(rewards.IfevalGroundTruthError, match="cannot take arguments"):
        rewards.score("x", json.dumps({"func_name": "validate_title", "N": 3}), "ifeval")


def test_several_constraints_score_the_mean():
    truths = [json.dumps({"func_name": "validate_lowercase"}), json.dumps({"func_name": "validate_no_commas"})]
    assert rewards.score("hello, world", truths, ["ifeval", "ifeval"]) == 0.5
    assert rewards.score("hello world", truths, "ifeval") == 1.0
