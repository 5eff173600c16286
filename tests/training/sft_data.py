"""A small SFT JSONL and tokenizer for training tests: short chats with assistant answers of varied length."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers.tiny_tokenizer import build_tiny_tokenizer

QUESTIONS = [
    ("What is 12 plus 30?", "The answer is 42."),
    ("Name a lazy animal.", "The dog."),
    ("Write a haiku about the sea.", "Waves fold into foam, the quick brown fox jumps over the sea."),
    ("Say bonjour.", "Bonjour! Ça va?"),
    ("How many clips did Natalia sell?", "She sold 48 clips in April and half as many in May, 72 in all."),
    ("Add two numbers in Python.", "def add(a, b):\n    return a + b\n"),
    ("Answer briefly.", "Yes."),
    ("Show your work: 2 plus 2.", "2 plus 2 is 4, so the answer is 4."),
]


def write_sft_jsonl(path: Path, copies: int = 4) -> Path:
    """``copies`` × 8 SFT records (some with a system turn, one with two assistant turns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as file:
        for copy in range(copies):
            for index, (question, answer) in enumerate(QUESTIONS):
                messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
                if index % 3 == 0:
                    messages.insert(0, {"role": "system", "content": "You are a helpful assistant."})
                if index == 4:
                    messages += [{"role": "user", "content": "And in May?"}, {"role": "assistant", "content": "24."}]
                file.write(json.dumps({"messages": messages, "id": f"{copy}-{index}"}) + "\n")
    return path


def make_run_inputs(directory: Path, copies: int = 4) -> tuple[Path, Path]:
    """(train.jsonl, tokenizer dir) under ``directory``."""
    data = write_sft_jsonl(directory / "train.jsonl", copies)
    tokenizer = build_tiny_tokenizer(directory / "tokenizer")
    return data, tokenizer


def tiny_overrides(directory: Path, output_dir: Path, *extra: str) -> list[str]:
    """Overrides of configs/sft_tiny_cpu.yaml pointing at generated inputs under ``directory``."""
    data, tokenizer = directory / "train.jsonl", directory / "tokenizer"
    return [f"output_dir={output_dir}", f"data.sources=[{{path: {data}}}]", f"data.tokenizer={tokenizer}", *extra]
