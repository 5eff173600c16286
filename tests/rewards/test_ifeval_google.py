"""Google's IFEval format: every instruction id of the real benchmark, strict and loose, via the project's copy."""

import json
from pathlib import Path

import pytest

import data_pipeline
from tulu_jax import rewards
from tulu_jax.rewards.ifeval_google import GOOGLE_CHECKS, evaluate_google

INPUT_DATA = Path(data_pipeline.__file__).parent / "assets" / "ifeval" / "input_data.jsonl"


@pytest.fixture(scope="module")
def prompts():
    with open(INPUT_DATA, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def test_every_instruction_id_in_the_benchmark_is_supported(prompts):
    used = {instruction for prompt in prompts for instruction in prompt["instruction_id_list"]}
    assert len(prompts) == 541
    assert len(used) == 25
    assert used <= set(GOOGLE_CHECKS)


@pytest.mark.parametrize("response", ["", "OK.", "my answer is yes."])
def test_all_real_prompts_run_on_trivial_responses(prompts, response):
    instructions = followed = 0
    for prompt in prompts:
        result = evaluate_google(response, prompt)
        assert len(result.strict) == len(prompt["instruction_id_list"])
        assert all(isinstance(verdict, bool) for verdict in result.strict + result.loose)
        assert all(loose or not strict for strict, loose in zip(result.strict, result.loose))
        instructions += len(result.strict)
        followed += sum(result.strict)
    assert instructions == 834
    if response == "":
        assert followed == 0  # an empty response follows nothing
    else:
        assert 0 < followed < instructions  # e.g. "no comma" is followed, "at least 300 words" is not


def _record(instruction_id, **kwargs):
    return {"instruction_id_list": [instruction_id], "kwargs": [kwargs]}


GOOGLE_CASES = [
    ("keywords:existence", {"keywords": ["moon"]}, "The moon is bright.", "Honeymoon plans."),
    ("keywords:frequency", {"keyword": "go", "frequency": 2, "relation": "at least"}, "Go, go!", "Go ahead, gopher."),
    ("keywords:frequency", {"keyword": "go", "frequency": 2, "relation": "less than"}, "Go ahead.", "go go"),
    ("keywords:forbidden_words", {"forbidden_words": ["war"]}, "Warm peace.", "No war."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zig zag.", "Zig."),
    ("language:response_language", {"language": "de"}, "Ich habe heute keine Zeit, weil ich arbeiten muss.",
     "I have no time today because I have to work."),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": "less than"}, "One sentence only.", "One. Two!"),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\nB", "A\n***\nB\n***\nC"),
    ("length_constraints:number_words", {"num_words": 3, "relation": "at least"}, "one two three", "one two"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "then"},
     "First.\n\nThen, more.", "First.\n\nNow more."),
    ("detectable_content:number_placeholders", {"num_placeholders": 1}, "Hi [name]", "Hi name"),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Body.\nP.P.S. later", "Body only."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* a\n* b", "* a\n* b\n* c"),
    ("detectable_format:constrained_response", {}, "My answer is maybe.", "Perhaps."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*a* and *b*", "*a* only"),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2},
     "SECTION 1\nx\nSECTION 2\ny", "SECTION 1\nx"),
    ("detectable_format:json_format", {}, '{"k": [1, 2]}', "k: 1"),
    ("detectable_format:title", {}, "<<Title>>\nText", "Title\nText"),
    ("combination:two_responses", {}, "A one.\n******\nB two.", "Only one."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Say hi."}, "say hi. Hi!", "Hi!"),
    ("startend:end_checker", {"end_phrase": "Peace out."}, "Bye. Peace out.", "Peace out. Bye."),
    ("startend:quotation", {}, '"All quoted."', "Not quoted."),
    ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": "at least"}, "I AM here.", "i am here."),
    ("change_case:english_capital", {}, "THIS IS ALL IN CAPITAL LETTERS AND IN ENGLISH.", "This is not."),
    ("change_case:english_lowercase", {}, "this is all in lowercase letters and in english.", "This is not."),
    ("punctuation:no_comma", {}, "No commas here.", "Yes, one."),
]


def test_every_google_check_has_a_case():
    assert {case[0] for case in GOOGLE_CASES} == set(GOOGLE_CHECKS)


@pytest.mark.parametrize("instruction_id, kwargs, passing, failing", GOOGLE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(GOOGLE_CASES)])
def test_google_check_passes_and_fails(instruction_id, kwargs, passing, failing):
    assert evaluate_google(passing, _record(instruction_id, **kwargs)).strict == (True,)
    assert evaluate_google(failing, _record(instruction_id, **kwargs)).strict == (False,)


def test_loose_accepts_a_chatty_first_line_and_asterisks():
    record = {
        "instruction_id_list": ["startend:quotation", "detectable_format:title"],
        "kwargs": [{}, {}],
    }
    response = 'Sure, here it is:\n"<<**Title**>> and the text."'
    result = evaluate_google(response, record)
    assert result.strict == (False, True)
    assert result.loose == (True, True)
    assert result.strict_fraction == 0.5 and not result.prompt_strict
    assert result.loose_fraction == 1.0 and result.prompt_loose


def test_google_records_score_through_the_ifeval_verifier():
    record = json.dumps({
        "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"],
        "kwargs": [{}, {"unused": None}],
    })
    assert rewards.score("all lowercase and no commas here in english.", record, "ifeval") == 1.0
    assert rewards.score("Capital, and a comma.", record, "ifeval") == 0.0
    assert rewards.score("Capital and no comma.", record, "ifeval") == 0.5


def test_unknown_instruction_id_is_a_clear_error():
    with pytest.raises(rewards.IfevalGroundTruthError, match="unknown IFEval instruction id"):
        evaluate_google("x", _record("keywords:telepathy"))
