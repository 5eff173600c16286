"""The shared test tokenizer is deterministic, fast, and loads in transformers with the Tülu template."""

import time

from data_pipeline.chat_template import render_tulu
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer


def test_tiny_tokenizer_is_deterministic_fast_and_loads_in_transformers(tmp_path):
    started = time.perf_counter()
    first = build_tiny_tokenizer(tmp_path / "a")
    elapsed = time.perf_counter() - started
    second = build_tiny_tokenizer(tmp_path / "b")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert elapsed < 1.0

    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(first))
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|end_of_text|>", "<pad>")
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == render_tulu(messages, "<|end_of_text|>")
