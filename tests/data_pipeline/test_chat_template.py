"""The rendered Tülu template equals RECIPE.md section 2 character for character and equals transformers'
apply_chat_template with the jinja template; labels cover exactly the assistant content and its EOS."""

import numpy as np
import pytest

from data_pipeline.chat_template import TULU_CHAT_TEMPLATE, JinjaChatTemplate, render_tulu
from data_pipeline.config import DataConfig
from data_pipeline.examples import IGNORE_INDEX, ExampleEncoder
from data_pipeline.tokenizer import load_tokenizer

EOS = "<|end_of_text|>"
SINGLE = [{"role": "user", "content": "What is 12 plus 30?"}, {"role": "assistant", "content": "The answer is 42."}]
SYSTEM = [{"role": "system", "content": "You are a helpful assistant."}, *SINGLE]
MULTI = [
    *SYSTEM,
    {"role": "user", "content": "Write a haiku\nabout the sea."},
    {"role": "assistant", "content": "Waves fold on\nthe shore  — 東京 🙂"},
]
CONVERSATIONS = {"single": SINGLE, "system": SYSTEM, "multi": MULTI}

# Written out by hand from RECIPE.md section 2.
EXPECTED = {
    "single": "<|user|>\nWhat is 12 plus 30?\n<|assistant|>\nThe answer is 42.<|end_of_text|>",
    "system": "<|system|>\nYou are a helpful assistant.\n<|user|>\nWhat is 12 plus 30?\n"
              "<|assistant|>\nThe answer is 42.<|end_of_text|>",
    "multi": "<|system|>\nYou are a helpful assistant.\n<|user|>\nWhat is 12 plus 30?\n"
             "<|assistant|>\nThe answer is 42.<|end_of_text|>\n<|user|>\nWrite a haiku\nabout the sea.\n"
             "<|assistant|>\nWaves fold on\nthe shore  — 東京 🙂<|end_of_text|>",
}


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer_dir):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")),
        eos_token=EOS, pad_token="<pad>", chat_template=TULU_CHAT_TEMPLATE,
    )


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_rendering_matches_recipe_and_transformers(name, hf_tokenizer):
    messages = CONVERSATIONS[name]
    ours = render_tulu(messages, EOS)
    assert ours == EXPECTED[name]
    assert hf_tokenizer.apply_chat_template(messages, tokenize=False) == ours
    assert JinjaChatTemplate(TULU_CHAT_TEMPLATE, EOS).render(messages) == ours


def test_generation_prompt_matches_transformers(hf_tokenizer):
    prompt = SINGLE[:1]
    ours = render_tulu(prompt, EOS, add_generation_prompt=True)
    assert ours == "<|user|>\nWhat is 12 plus 30?\n<|assistant|>\n"
    assert hf_tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True) == ours


def _trained_text(tokenizer, example):
    """The trained tokens decoded span by span (a span = a run of consecutive trained positions)."""
    trained = example.labels != IGNORE_INDEX
    spans, current = [], []
    for token, is_trained in zip(example.input_ids, trained):
        if is_trained:
            current.append(int(token))
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    if current:
        spans.append(tokenizer.decode(current))
    return spans


# The sentencepiece model carries no jinja chat template, so it is checked with the built-in Tülu one.
@pytest.mark.parametrize("tokenizer_kind,template", [("hf", "tulu"), ("hf", "tokenizer"), ("sentencepiece", "tulu")])
def test_labels_cover_exactly_assistant_content_and_eos(template, tokenizer_kind, tokenizer_dir, sentencepiece_model):
    path = tokenizer_dir if tokenizer_kind == "hf" else sentencepiece_model
    tokenizer = load_tokenizer(path)
    encoder = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(path), chat_template=template))
    example = encoder.sft({"messages": MULTI})
    assert tokenizer.decode(example.input_ids.tolist()) == EXPECTED["multi"]
    assert np.all((example.labels == IGNORE_INDEX) | (example.labels == example.input_ids))
    assert _trained_text(tokenizer, example) == [f"The answer is 42.{EOS}", f"Waves fold on\nthe shore  — 東京 🙂{EOS}"]
    # The EOS token id itself is trained (not a string that happens to decode the same).
    assert np.sum(example.labels == tokenizer.eos_id) == 2


def test_last_assistant_only_and_bos(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    config = DataConfig(tokenizer=str(tokenizer_dir), train_on="last_assistant", add_bos=True)
    example = ExampleEncoder(tokenizer, config).sft({"messages": MULTI})
    assert example.input_ids[0] == tokenizer.bos_id and example.labels[0] == IGNORE_INDEX
    assert _trained_text(tokenizer, example) == [f"Waves fold on\nthe shore  — 東京 🙂{EOS}"]


def test_token_ids_are_per_segment_encodings(tokenizer_dir):
    """Documented behaviour: ids are the concatenation of the encodings of the template pieces."""
    tokenizer = load_tokenizer(tokenizer_dir)
    example = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(tokenizer_dir))).sft({"messages": SINGLE})
    expected = (tokenizer.encode("<|user|>\nWhat is 12 plus 30?\n<|assistant|>\n")
                + tokenizer.encode("The answer is 42.") + [tokenizer.eos_id])
    assert example.input_ids.tolist() == expected


def test_preference_pair_masks_prompt(tokenizer_dir, hf_tokenizer):
    tokenizer = load_tokenizer(tokenizer_dir)
    chosen = MULTI
    rejected = [*MULTI[:-1], {"role": "assistant", "content": "No."}]
    pair = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(tokenizer_dir))).preference(
        {"chosen": chosen, "rejected": rejected})
    for example, messages, reply in ((pair[0], chosen, MULTI[-1]["content"]), (pair[1], rejected, "No.")):
        assert tokenizer.decode(example.input_ids.tolist()) == hf_tokenizer.apply_chat_template(messages, tokenize=False)
        assert _trained_text(tokenizer, example) == [reply + EOS]


def test_rlvr_prompt_ends_with_generation_prompt(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    ids = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(tokenizer_dir))).rlvr_prompt(
        {"messages": SINGLE[:1], "ground_truth": "42", "dataset": "gsm8k"})
    assert tokenizer.decode(ids.tolist()) == "<|user|>\nWhat is 12 plus 30?\n<|assistant|>\n"
    assert ids[-len(tokenizer.encode("<|assistant|>\n")):].tolist() == tokenizer.encode("<|assistant|>\n")


def test_truncation_and_drop_are_counted(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    long_answer = {"messages": [SINGLE[0], {"role": "assistant", "content": "word " * 200}]}
    prompt_length = len(tokenizer.encode("<|user|>\nWhat is 12 plus 30?\n<|assistant|>\n"))
    truncating = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(tokenizer_dir), max_seq_len=prompt_length + 5))
    example = truncating.sft(long_answer)
    assert len(example) == prompt_length + 5 and example.num_trained == 5 and truncating.truncated == 1
    # Truncated inside the prompt: nothing left to train → dropped and counted.
    short = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(tokenizer_dir), max_seq_len=prompt_length))
    assert short.sft(long_answer) is None and short.dropped.counts == {"no_trained_token": 1}
    dropping = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(tokenizer_dir), max_seq_len=50, truncation="drop"))
    assert dropping.sft(long_answer) is None and dropping.dropped.counts == {"longer_than_max_seq_len": 1}
    assert "1 dropped" in dropping.report()
