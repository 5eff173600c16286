"""Prompts for generation on the real SmolLM2 tokenizer: its own ChatML template by default, the ids of
transformers' ``apply_chat_template``, and the same ids training gives the same conversation (either template)."""

import json

import pytest

from data_pipeline.chat_template import resolve_chat_template
from data_pipeline.config import DataConfig
from data_pipeline.examples import IGNORE_INDEX, ExampleEncoder
from tests.helpers.real_conversations import GSM8K, gsm8k_rows, multi_turn, single_turn
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tulu_jax.errors import DataError
from tulu_jax.generation import encode_prompt

IFEVAL = GSM8K.parent / "ifeval" / "input_data.jsonl"


def prompt_conversations() -> list[list[dict]]:
    """Single-turn GSM8K and IFEval prompts, a system prompt, and multi-turn prompts with earlier answers."""
    ifeval = [json.loads(line)["prompt"] for line in IFEVAL.read_text().splitlines()[:20]]
    gsm8k = gsm8k_rows("train", 30)
    conversations = [[{"role": "user", "content": prompt}] for prompt in ifeval]
    conversations += [single_turn(row)[:1] for row in gsm8k[:10]]
    conversations += [[{"role": "system", "content": "Answer briefly."}, *single_turn(row)[:1]] for row in gsm8k[10:15]]
    conversations += [multi_turn(gsm8k[i : i + 2]) + single_turn(gsm8k[i + 2])[:1] for i in range(15, 27, 3)]
    return conversations


def test_default_is_the_tokenizers_own_template_and_a_missing_one_is_a_clear_error(smollm2_tokenizer, tmp_path):
    from data_pipeline.tokenizer import load_tokenizer

    assert resolve_chat_template(None, smollm2_tokenizer) == "tokenizer"
    directory = build_tiny_tokenizer(tmp_path / "tiny")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "chat_template.jinja").unlink(missing_ok=True)
    without_template = load_tokenizer(directory)
    assert resolve_chat_template(None, without_template) == "tulu"
    with pytest.raises(DataError, match="has none; use 'tulu'"):
        encode_prompt(without_template, [{"role": "user", "content": "hi"}], chat_template="tokenizer")


def test_prompt_ids_equal_transformers_apply_chat_template(smollm2_dir, smollm2_tokenizer):
    import transformers

    reference = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    for messages in prompt_conversations():
        expected = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        assert encode_prompt(smollm2_tokenizer, messages) == list(expected)
        assert reference.decode(expected).endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("template", ["tokenizer", "tulu"])
def test_generation_ids_equal_training_ids_for_the_same_template(smollm2_dir, smollm2_tokenizer, template):
    encoder = ExampleEncoder(smollm2_tokenizer, DataConfig(tokenizer=str(smollm2_dir), chat_template=template))
    for row in gsm8k_rows("train", 20, 100):
        conversation = single_turn(row)
        example = encoder.sft({"messages": conversation})
        first_trained = list(example.labels).index(next(label for label in example.labels if label != IGNORE_INDEX))
        prompt_ids = encode_prompt(smollm2_tokenizer, conversation[:1], chat_template=template)
        assert list(example.input_ids[:first_trained]) == prompt_ids
    for messages in prompt_conversations():
        rlvr_ids = encoder.rlvr_prompt({"messages": messages, "ground_truth": "1", "dataset": "gsm8k"})
        assert list(rlvr_ids) == encode_prompt(smollm2_tokenizer, messages, chat_template=template)
