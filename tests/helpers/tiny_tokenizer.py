"""Tiny tokenizers trained in a fraction of a second, for tests: a byte-level BPE saved as a HF tokenizer
directory (with the Tülu markers, ``<|end_of_text|>`` as EOS, ``<pad>``, and the Tülu chat template), and a
sentencepiece model. Deterministic: the same files on every call."""

from __future__ import annotations

from pathlib import Path

from data_pipeline.tokenizer_training import BOS, EOS, PAD, ROLE_MARKERS as MARKERS, train_bpe_tokenizer

TRAINING_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "What is 12 plus 30? The answer is 42.",
    "You are a helpful assistant. Answer briefly and show your work.",
    "Write a haiku about the sea, then explain it in one sentence.",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "def add(a, b):\n    return a + b\n",
    "Bonjour! Ça va? Größe, naïve café — 東京 🙂",
] * 4


def build_tiny_tokenizer(directory: str | Path, vocab_size: int = 400) -> Path:
    """Write tokenizer.json + tokenizer_config.json into ``directory`` and return it."""
    return train_bpe_tokenizer(TRAINING_TEXT, directory, vocab_size=vocab_size)


def build_tiny_sentencepiece(directory: str | Path, vocab_size: int = 400) -> Path:
    """Train a small BPE sentencepiece model (identity normalisation, byte fallback, Llama-2 style) and
    return the path of its ``.model`` file. EOS is ``<|end_of_text|>``."""
    import io

    import sentencepiece

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TRAINING_TEXT),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        byte_fallback=True,
        bos_id=1, eos_id=2, pad_id=3, unk_id=0,
        bos_piece=BOS, eos_piece=EOS, pad_piece=PAD,
        user_defined_symbols=list(MARKERS),
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    path = directory / "tiny.model"
    path.write_bytes(model.getvalue())
    return path
