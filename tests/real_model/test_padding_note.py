"""The data log says which token pads, and says "no pad token" only when the tokenizer has none (SmolLM2 has one)."""

import json

from data_pipeline.pipeline import padding_note
from data_pipeline.tokenizer import load_tokenizer
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer


def test_a_declared_pad_token_equal_to_eos_is_not_called_missing(smollm2_tokenizer):
    assert padding_note(smollm2_tokenizer) == "padding with '<|im_end|>' (id 2 = EOS, the tokenizer's own pad token)"


def test_a_tokenizer_without_pad_token_is_said_to_borrow_eos(tmp_path):
    directory = build_tiny_tokenizer(tmp_path / "tiny")
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config.pop("pad_token", None)
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    (directory / "special_tokens_map.json").unlink(missing_ok=True)
    tokenizer = load_tokenizer(directory)
    assert padding_note(tokenizer).endswith(f"(id {tokenizer.eos_id} = EOS, as the tokenizer has no pad token)")
