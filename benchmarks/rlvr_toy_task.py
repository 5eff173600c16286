"""A tiny verifiable task for the RLVR benchmark and the RLVR stage's tests on CPU.

The vocabulary is 32 single characters (digits, a few letters and symbols) plus ``<pad>`` and EOS, so a
randomly initialised tiny model spreads its probability over few tokens. Every prompt is a random letter
string and its answer is one fixed digit, checked by the real ``gsm8k`` (last number) or ``math`` verifier.
A random policy answers correctly a few percent of the time; learning to emit the digit is a
vocabulary-level skill that a tiny model picks up in tens of RL steps. It exercises the whole RLVR
machinery (sampling, decoding, verifiers, KL, advantages, clipped updates); it says nothing about reasoning.
"""

from __future__ import annotations

import random
from typing import Optional

from tulu_jax.models import LlamaConfig, preset

PAD, EOS = "<pad>", "<|end_of_text|>"
CHARACTERS = "0123456789 abcdefghijklmnop+=?"
ANSWER = "7"


class ToyTokenizer:
    """A character tokenizer with the ``data_pipeline.tokenizer.Tokenizer`` interface (ids 0 pad, 1 EOS)."""

    pad_id, eos_id, eos_token, bos_id = 0, 1, EOS, None

    def __init__(self):
        self.tokens = [PAD, EOS, *CHARACTERS]
        self.ids = {token: index for index, token in enumerate(self.tokens)}
        self.vocab_size = len(self.tokens)

    def encode(self, text: str) -> list[int]:
        return [self.ids[character] for character in text]

    def decode(self, ids) -> str:
        return "".join(self.tokens[int(i)] for i in ids if int(i) > 1)

    def token_to_id(self, token: str) -> Optional[int]:
        return self.ids.get(token)

    def id_to_token(self, token_id: int) -> Optional[str]:
        return self.tokens[token_id] if 0 <= token_id < len(self.tokens) else None


# ``model.overrides`` of the ``tiny`` preset cut to the toy vocabulary (EOS 1, pad 0).
TOY_MODEL_OVERRIDES = dict(vocab_size=32, eos_token_id=1, pad_token_id=0, hidden_size=32, intermediate_size=64,
                           num_heads=2, num_kv_heads=1, max_position_embeddings=64)


def toy_model_config(**overrides) -> LlamaConfig:
    """The ``tiny`` preset cut to the toy vocabulary (EOS 1, pad 0), float32, unscanned layers."""
    return preset("tiny", **{**TOY_MODEL_OVERRIDES, **overrides})


def toy_prompts(count: int, seed: int = 0, datasets=("gsm8k", "math")) -> list[dict]:
    """RLVR prompts as ``prepare_data`` gives them: ``prompt_ids``, ``ground_truth``, ``dataset``."""
    rng = random.Random(seed)
    tokenizer = ToyTokenizer()
    letters = "abcdefghijklmnop"
    prompts = []
    for index in range(count):
        text = "".join(rng.choice(letters) for _ in range(rng.randint(3, 7))) + "=?"
        prompts.append({"prompt_ids": tokenizer.encode(text), "ground_truth": ANSWER,
                        "dataset": datasets[index % len(datasets)]})
    return prompts
