"""Synthetic preference data for the preference-stage tests: separable pairs, a tiny tokenizer, stage configs.

Chosen responses are drawn from one family of sentences and rejected ones from another, so a tiny model
can learn to tell them apart within a few dozen steps; prompts vary so held-out pairs are new.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.helpers.tiny_tokenizer import build_tiny_tokenizer

CHOSEN = ["The answer is 42.", "What is 12 plus 30? The answer is 42.", "Answer briefly and show your work."]
REJECTED = ["Bonjour! Ça va?", "Größe, naïve café.", "東京 🙂 Bonjour!"]
PROMPTS = ["What is {a} plus {b}?", "Write a haiku about the number {a}.", "Explain {a} and {b} briefly."]


def write_pairs(path: Path, count: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(count):
        prompt = rng.choice(PROMPTS).format(a=rng.randint(1, 99), b=rng.randint(1, 99))
        user = [{"role": "user", "content": prompt}]
        lines.append(json.dumps({
            "chosen": user + [{"role": "assistant", "content": rng.choice(CHOSEN)}],
            "rejected": user + [{"role": "assistant", "content": rng.choice(REJECTED)}],
        }))
    path.write_text("\n".join(lines) + "\n")
    return path


def stage_dict(directory: Path, data_path: Path, tokenizer: Path, **sections) -> dict:
    """A tiny CPU stage config (plain dict) for DPO or RM; ``sections`` are merged over the defaults."""
    raw = {
        "output_dir": str(directory / "run"),
        "seed": 0,
        "model": {"source": "tiny", "overrides": {"vocab_size": 512}},
        "data": {"sources": [{"path": str(data_path)}], "tokenizer": str(tokenizer), "kind": "preference",
                 "max_seq_len": 48, "packing": "padded", "eval_fraction": 0.25, "seed": 0},
        "optimizer": {"learning_rate": 2e-3, "max_grad_norm": 1.0},
        "schedule": {"kind": "constant", "warmup_ratio": 0.0},
        "training": {"batch_size": 16, "epochs": 1, "max_steps": 20, "log_every": 1, "tensorboard": False,
                     "progress_bar": False},
        "checkpoint": {"save_every": 0, "async_save": False, "resume": True},
    }
    for name, value in sections.items():
        raw[name] = {**raw.get(name, {}), **value} if isinstance(value, dict) else value
    return raw


def build_tokenizer(directory: Path) -> Path:
    return build_tiny_tokenizer(directory / "tokenizer")


def read_metrics(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def enable_compilation_cache(directory: Path) -> None:
    """Share compiled steps between the stage runs of a module (identical programs load from disk)."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
