"""Segment-by-segment vs whole-text tokenization with the real Llama 3 tokenizer, measured on real data.

``ExampleEncoder`` tokenizes each template piece on its own (data_pipeline/examples.py). With Llama 3's
pre-tokenizer the only Tülu-template boundary where that changes ids is ``<|assistant|>\\n`` followed by
content that starts with a newline: whole text merges ``>\\n\\n\\n`` into one token, segments give
``>\\n`` + ``\\n\\n`` (``\\r\\n`` happens to split the same both ways). Segments are kept: the label
boundary is exact, and the prompt's ids are the ones the model meets at generation time, where
``…<|assistant|>\\n`` is tokenized alone; whole-text ids would train a ``>\\n\\n\\n`` it is never prompted with.

Reproduce the figures (ids that differ from ``apply_chat_template``: GSM8K test 0 of 1,319; demo SFT 0 of 2,000) with
``.venv/bin/python -m tests.data_pipeline.test_segment_tokenization``. Tokenizer license: see
tests/helpers/llama3_tokenizer.py (Llama 3 Community License, read from the llama-models package).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterable, Sequence

import pytest

import data_pipeline
from data_pipeline.chat_template import TULU_CHAT_TEMPLATE, render_tulu
from data_pipeline.config import DataConfig
from data_pipeline.examples import ExampleEncoder
from data_pipeline.tokenizer import load_tokenizer

GSM8K_TEST = Path(data_pipeline.__file__).parent / "assets" / "gsm8k" / "test.jsonl"


def gsm8k_conversations(path: Path = GSM8K_TEST) -> list[list[dict]]:
    """Each problem as an SFT conversation: the question from the user, the worked answer from the assistant."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return [[{"role": "user", "content": r["question"]}, {"role": "assistant", "content": r["answer"]}]
            for r in records]


def demo_conversations(directory: Path) -> list[list[dict]]:
    """The demo recipe's SFT set (configs/demo_cpu.yaml: seed 0, 2,000 examples)."""
    from data_pipeline.demo import build_demo_data

    files = build_demo_data(directory, seed=0, sft_size=2000, preference_size=1000, rlvr_size=1000, eval_size=200)
    return [json.loads(line)["messages"] for line in files.sft.read_text().splitlines()]


def starts_with_newline(messages: Sequence[dict]) -> bool:
    return any(m["role"] == "assistant" and m["content"][:1] in ("\n", "\r") for m in messages)


@functools.lru_cache(maxsize=2)
def _tokenizers(tokenizer_dir: Path):
    from transformers import AutoTokenizer

    config = DataConfig(tokenizer=str(tokenizer_dir), max_seq_len=1 << 20)
    encoder = ExampleEncoder(load_tokenizer(tokenizer_dir), config)
    return AutoTokenizer.from_pretrained(str(tokenizer_dir)), encoder


def count_differences(tokenizer_dir: Path, conversations: Iterable[Sequence[dict]]) -> tuple[int, int, int]:
    """(conversations, how many of our segment-by-segment ids differ from the whole-text ids of transformers'
    ``apply_chat_template``, how many have an assistant turn starting with a newline). ``tokenizer_dir``
    must carry the Tülu chat template."""
    reference, encoder = _tokenizers(tokenizer_dir)
    total = differ = newline = 0
    for messages in conversations:
        segmented = encoder.sft({"messages": messages}).input_ids.tolist()
        whole = reference.apply_chat_template(list(messages), tokenize=True)["input_ids"]
        total, differ, newline = total + 1, differ + (segmented != whole), newline + starts_with_newline(messages)
    return total, differ, newline


@pytest.mark.parametrize("name,expected", [("gsm8k_test", (1319, 0, 0)), ("demo_sft", (2000, 0, 0))])
def test_real_data_tokenizes_the_same_by_segments(name, expected, tulu_llama3_tokenizer_dir, tmp_path):
    conversations = gsm8k_conversations() if name == "gsm8k_test" else demo_conversations(tmp_path)
    assert count_differences(tulu_llama3_tokenizer_dir, conversations) == expected


def test_only_leading_newlines_change_the_ids(tulu_llama3_tokenizer_dir):
    """The documented trade-off, and that it is the only one at the Tülu template's boundaries."""
    tokenizer = load_tokenizer(tulu_llama3_tokenizer_dir)
    encoder = ExampleEncoder(tokenizer, DataConfig(tokenizer=str(tulu_llama3_tokenizer_dir)))
    contents = ["\n\nThe answer", "\nx", "\r\nx", " \n\nx", "  x", "\tx", "*x*", "```py\nx\n```", "x\n\n", "x ", "42"]
    conversations = [[{"role": "user", "content": "q?\n"}, {"role": "assistant", "content": c}] for c in contents]
    differing = [c for c, messages in zip(contents, conversations)
                 if count_differences(tulu_llama3_tokenizer_dir, [messages])[1]]
    assert differing == ["\n\nThe answer", "\nx"]  # "\r\n" after "|>\n" happens to split the same way
    example = encoder.sft({"messages": conversations[0]})
    prompt = tokenizer.encode("<|user|>\nq?\n\n<|assistant|>\n")
    assert example.input_ids[: len(prompt)].tolist() == prompt  # the generation-time prompt, token for token
    assert [tokenizer.decode([i]) for i in example.input_ids[len(prompt) - 1 : len(prompt) + 1]] == [">\n", "\n\n"]
    whole = tokenizer.encode(render_tulu(conversations[0], tokenizer.eos_token))
    assert tokenizer.decode([whole[len(prompt) - 1]]) == ">\n\n\n"


if __name__ == "__main__":
    import tempfile

    from tests.helpers.llama3_tokenizer import PAD, build_llama3_tokenizer

    with tempfile.TemporaryDirectory() as scratch:
        tokenizer_dir = build_llama3_tokenizer(Path(scratch) / "tokenizer", pad_token=PAD,
                                               chat_template=TULU_CHAT_TEMPLATE)
        for label, conversations in (("GSM8K test", gsm8k_conversations()),
                                     ("demo SFT", demo_conversations(Path(scratch) / "demo"))):
            total, differ, newline = count_differences(tokenizer_dir, conversations)
            print(f"{label}: {differ} of {total} conversations tokenize differently by segments than whole-text "
                  f"apply_chat_template ({newline} have an assistant turn starting with a newline)")
