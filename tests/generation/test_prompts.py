"""Prompt preparation: the Tülu generation prompt, left padding, length buckets, record fields, decoding."""

import numpy as np
import pytest

from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tulu_jax.errors import DataError
from tulu_jax.generation import bucket_length, encode_prompt, left_pad
from tulu_jax.generation.prompts import decode_response, record_messages


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_prompt_tokens_equal_transformers_apply_chat_template(tokenizer_dir):
    import transformers

    from data_pipeline.tokenizer import load_tokenizer

    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is 12 plus 30?"},
    ]
    reference = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    text = reference.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|assistant|>\n")
    ours = encode_prompt(load_tokenizer(tokenizer_dir), messages)
    assert ours == reference.encode(text, add_special_tokens=False)


def test_buckets_are_powers_of_two_then_multiples_of_512():
    assert [bucket_length(n) for n in (1, 16, 17, 100, 256, 257, 512, 513, 1500)] == [16, 16, 32, 128, 256, 512, 512, 1024, 1536]


def test_left_pad_right_aligns_prompts_and_fills_the_batch():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, length=4, batch_size=3)
    np.testing.assert_array_equal(ids, [[0, 5, 6, 7], [0, 0, 0, 8], [0, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 1]])
    assert left_pad([[1] * 20], pad_id=0)[0].shape == (1, 32)
    with pytest.raises(DataError, match="no tokens"):
        left_pad([[1], []], pad_id=0)
    with pytest.raises(DataError, match="more than the padded length"):
        left_pad([[1, 2, 3]], pad_id=0, length=2)


def test_record_messages_accepts_messages_or_prompt_and_names_the_line():
    conversation = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "old answer"}]
    assert record_messages({"messages": conversation}, "f:1") == conversation[:1]
    assert record_messages({"prompt": "hello"}, "f:2") == [{"role": "user", "content": "hello"}]
    with pytest.raises(DataError, match="f:3"):
        record_messages({"text": "no prompt"}, "f:3")
    with pytest.raises(DataError, match="f:4: unknown role"):
        record_messages({"messages": [{"role": "tool", "content": "x"}]}, "f:4")


class _Letters:
    """A toy tokenizer: token i is the letter chr(97 + i)."""

    def decode(self, ids):
        return "".join(chr(97 + i) for i in ids)


def test_decode_response_drops_the_stop_token_only_when_stopped():
    assert decode_response(_Letters(), [0, 1, 2, 25, 25], length=3, stopped=True) == "ab"
    assert decode_response(_Letters(), [0, 1, 2, 3], length=4, stopped=False) == "abcd"
