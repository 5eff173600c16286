"""Train a small byte-level BPE tokenizer locally and save it as a Hugging Face tokenizer directory.

The directory has ``tokenizer.json`` and a ``tokenizer_config.json`` with the Llama 3 special tokens the
recipe uses (``<|begin_of_text|>``, ``<|end_of_text|>`` as EOS, a distinct ``<pad>``), the Tülu role markers,
and the Tülu chat template, so ``transformers.AutoTokenizer`` loads it and chats with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from data_pipeline.chat_template import TULU_CHAT_TEMPLATE

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<pad>"
ROLE_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>")


def train_bpe_tokenizer(texts: Iterable[str], directory: str | Path, vocab_size: int = 512) -> Path:
    """Train on ``texts`` and write the tokenizer directory; deterministic for the same texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS, PAD, *ROLE_MARKERS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "chat_template": TULU_CHAT_TEMPLATE,
        "model_max_length": 4096,
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return directory
