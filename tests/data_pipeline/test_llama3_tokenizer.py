"""The chat template, labels, pad token and BOS guard with the real Llama 3 tokenizer.

The tokenizer is Meta's ``llama3/tokenizer.model`` tiktoken file from the ``llama-models`` package (test extra),
licensed under the Llama 3 Community License Agreement; it is converted to a Hugging Face tokenizer once per
session (tests/helpers/llama3_tokenizer.py) and never stored in this repository. Token ids are checked against
Meta's own tiktoken tokenizer and against ``transformers``' ``apply_chat_template``.
"""

import logging

import numpy as np
import pytest

from data_pipeline.chat_template import Segment
from data_pipeline.config import DataConfig, SourceConfig
from data_pipeline.errors import DataError
from data_pipeline.examples import IGNORE_INDEX, ExampleEncoder
from data_pipeline.tokenizer import load_tokenizer
from tests.data_pipeline.test_chat_template import CONVERSATIONS, EXPECTED, MULTI, SINGLE, _trained_text
from tests.data_pipeline.test_segment_tokenization import gsm8k_conversations
from tests.helpers.llama3_tokenizer import BOS, EOS, EOT, LLAMA3_INSTRUCT_TEMPLATE, build_llama3_tokenizer

TEXTS = [
    "Hello world!\n\n  indented", "<|user|>\nWhat is 12 plus 30?\n<|assistant|>\n\n\nThe answer",
    "Bonjour! Ça va? Größe, naïve café — 東京 🙂", "x = 16 - 3 - 4 = <<16-3-4=9>>9\n#### 9",
    "  \t\r\n  trailing  ",
    f"{BOS}special{EOS}tokens{EOT}",
]


@pytest.fixture(scope="module")
def tulu_tokenizer(tulu_llama3_tokenizer_dir):
    return load_tokenizer(tulu_llama3_tokenizer_dir)


@pytest.fixture(scope="module")
def transformers_tokenizer(tulu_llama3_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tulu_llama3_tokenizer_dir))


def test_conversion_matches_meta_tiktoken(tulu_tokenizer):
    from llama_models.llama3.tokenizer import Tokenizer

    meta = Tokenizer.get_instance()
    gsm8k = [m["content"] for messages in gsm8k_conversations() for m in messages]  # 2,638 real texts
    for text in TEXTS + gsm8k:
        assert tulu_tokenizer.encode(text) == meta.encode(text, bos=False, eos=False, allowed_special="all"), text
    assert (tulu_tokenizer.bos_id, tulu_tokenizer.eos_id) == (meta.bos_id, meta.eos_id) == (128000, 128001)


def test_tulu_pad_token_extends_the_vocabulary(tulu_tokenizer, transformers_tokenizer):
    assert tulu_tokenizer.vocab_size == len(transformers_tokenizer) == 128257
    assert tulu_tokenizer.pad_id == transformers_tokenizer.pad_token_id == 128256
    assert tulu_tokenizer.pad_token == "<pad>"


def test_missing_pad_token_logs_the_padding_id(llama3_tokenizer_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="data_pipeline.tokenizer"):
        tokenizer = load_tokenizer(llama3_tokenizer_dir)
    assert tokenizer.vocab_size == 128256
    assert (tokenizer.pad_id, tokenizer.pad_token) == (tokenizer.eos_id, EOS) == (128001, EOS)
    assert "no pad token" in caplog.text and "id 128001" in caplog.text and repr(EOS) in caplog.text


@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
@pytest.mark.parametrize("template", ["tulu", "tokenizer"])
def test_token_ids_equal_apply_chat_template(name, template, tulu_llama3_tokenizer_dir, tulu_tokenizer,
                                             transformers_tokenizer):
    messages = CONVERSATIONS[name]
    config = DataConfig(tokenizer=str(tulu_llama3_tokenizer_dir), chat_template=template)
    example = ExampleEncoder(tulu_tokenizer, config).sft({"messages": messages})
    reference = transformers_tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"]
    assert example.input_ids.tolist() == reference
    assert transformers_tokenizer.decode(reference) == EXPECTED[name]


def test_rlvr_prompt_equals_apply_chat_template(tulu_llama3_tokenizer_dir, tulu_tokenizer, transformers_tokenizer):
    prompt = SINGLE[:1]
    ids = ExampleEncoder(tulu_tokenizer, DataConfig(tokenizer=str(tulu_llama3_tokenizer_dir))).rlvr_prompt(
        {"messages": prompt, "ground_truth": "42", "dataset": "gsm8k"})
    reference = transformers_tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True)
    assert ids.tolist() == reference["input_ids"]


@pytest.mark.parametrize("train_on,expected", [
    ("all_assistant", [f"The answer is 42.{EOS}", f"Waves fold on\nthe shore  — 東京 🙂{EOS}"]),
    ("last_assistant", [f"Waves fold on\nthe shore  — 東京 🙂{EOS}"]),
])
def test_labels_cover_exactly_assistant_content_and_eos(train_on, expected, tulu_llama3_tokenizer_dir, tulu_tokenizer):
    config = DataConfig(tokenizer=str(tulu_llama3_tokenizer_dir), train_on=train_on)
    example = ExampleEncoder(tulu_tokenizer, config).sft({"messages": MULTI})
    assert np.all((example.labels == IGNORE_INDEX) | (example.labels == example.input_ids))
    assert _trained_text(tulu_tokenizer, example) == expected
    assert np.sum(example.labels == tulu_tokenizer.eos_id) == len(expected)
    assert not np.any(example.input_ids == tulu_tokenizer.pad_id)


def test_add_bos_prepends_one_untrained_bos(tulu_llama3_tokenizer_dir, tulu_tokenizer):
    config = DataConfig(tokenizer=str(tulu_llama3_tokenizer_dir), add_bos=True)
    example = ExampleEncoder(tulu_tokenizer, config).sft({"messages": SINGLE})
    assert example.input_ids[:2].tolist() == [128000, tulu_tokenizer.encode("<|")[0]]
    assert example.labels[0] == IGNORE_INDEX


@pytest.fixture(scope="module")
def instruct_tokenizer_dir(tmp_path_factory):
    """Llama 3 Instruct's template, which writes ``{{ bos_token }}`` itself."""
    return build_llama3_tokenizer(tmp_path_factory.mktemp("llama3_instruct"), chat_template=LLAMA3_INSTRUCT_TEMPLATE)


def test_template_bos_plus_add_bos_is_an_error_naming_both(instruct_tokenizer_dir):
    tokenizer = load_tokenizer(instruct_tokenizer_dir)
    config = DataConfig(tokenizer=str(instruct_tokenizer_dir), chat_template="tokenizer", add_bos=True)
    with pytest.raises(DataError, match=r"two BOS tokens.*bos_token.*data.add_bos=true.*set data.add_bos=false"):
        ExampleEncoder(tokenizer, config).sft({"messages": SINGLE})


def test_template_bos_alone_gives_one_bos_and_matches_transformers(instruct_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = load_tokenizer(instruct_tokenizer_dir)
    config = DataConfig(tokenizer=str(instruct_tokenizer_dir), chat_template="tokenizer")
    example = ExampleEncoder(tokenizer, config).sft({"messages": SINGLE})
    reference = AutoTokenizer.from_pretrained(str(instruct_tokenizer_dir)).apply_chat_template(SINGLE, tokenize=True)
    assert example.input_ids.tolist() == reference["input_ids"]
    assert example.input_ids[0] == 128000 and example.input_ids[1] != 128000
    assert _trained_text(tokenizer, example) == [f"The answer is 42.{EOT}"]


def test_bos_written_twice_without_add_bos_is_an_error(tulu_llama3_tokenizer_dir, tulu_tokenizer):
    encoder = ExampleEncoder(tulu_tokenizer, DataConfig(tokenizer=str(tulu_llama3_tokenizer_dir)))
    with pytest.raises(DataError, match="two BOS tokens.*writes it twice"):
        encoder.encode_segments([Segment(BOS + BOS + "hi", False), Segment("x", True)])
    assert encoder.encode_segments([Segment(BOS + "hi", False), Segment("x", True)]).input_ids[0] == 128000


@pytest.mark.parametrize("variant,pad_id,note", [("base", 128001, "= EOS"), ("tulu", 128256, "'<pad>' (id 128256)")])
def test_padded_rows_use_and_report_the_pad_id(variant, pad_id, note, llama3_tokenizer_dir, tulu_llama3_tokenizer_dir,
                                               tmp_path):
    from data_pipeline.pipeline import prepare_data
    from tests.data_pipeline.conftest import sft_record, write_jsonl

    path = write_jsonl(tmp_path / "sft.jsonl", [sft_record("What is 2+2?", "4"), sft_record("Hi", "Hello there.")])
    tokenizer_dir = llama3_tokenizer_dir if variant == "base" else tulu_llama3_tokenizer_dir
    config = DataConfig(sources=(SourceConfig(str(path)),), tokenizer=str(tokenizer_dir), max_seq_len=32,
                        packing="padded", shuffle=False)
    lines = []
    rows = prepare_data(config, log=lines.append).train
    padding = rows["segment_ids"] == 0
    assert padding.any() and np.all(rows["input_ids"][padding] == pad_id)
    assert np.all(rows["labels"][padding] == IGNORE_INDEX)
    assert any(line.startswith("padding with") and note in line for line in lines), lines
