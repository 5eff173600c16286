"""SFT data-pipeline throughput (chat template + tokenize + labels, then packing) against what the SFT step consumes.

    python -m benchmarks.data_pipeline [--quick] [--records N]

A byte-level BPE tokenizer (vocabulary 8192, like the "small" preset) is trained locally on seeded
synthetic text, then seeded multi-turn chat records (an optional system prompt, 1-3 user/assistant turns
mixing the demo's arithmetic and instruction tasks with free text drawn Zipf-like from a 20k-word
vocabulary) go through ``ExampleEncoder.sft`` (Tülu template, per-segment tokenization, labels) and
``pack_examples`` into rows of 512 tokens, in one process. The figure is real (non-pad) tokens produced per
second. In the same run the small-preset SFT step (batch 4 × 512, ``benchmarks.sft_step.jax_stepper``) is
timed, and the ratio pipeline tokens/s ÷ step tokens/s is reported against a target of 10: the pipeline
should be far from being what a CPU (or one TPU host's input process) waits on.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from typing import Sequence

import numpy as np

from benchmarks.decontamination import synthetic_prompts
from data_pipeline.config import DataConfig
from data_pipeline.demo.arithmetic import make_problem
from data_pipeline.demo.instructions import make_instruction
from data_pipeline.examples import ExampleEncoder
from data_pipeline.packing import pack_examples
from data_pipeline.tokenizer import Tokenizer, load_tokenizer
from data_pipeline.tokenizer_training import train_bpe_tokenizer

VOCAB_SIZE = 8192  # the "small" preset's vocabulary
ROW_LENGTH = 512  # benchmarks.sft_step.LENGTH
TARGET_RATIO = 10.0
TEXT_POOL = 4000  # distinct free-text passages the records draw from (as many again train the tokenizer)
MAX_CHARACTERS = 900  # no further turn once a conversation is this long
SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a careful tutor. Show your work and keep answers short.",
    "Answer as precisely as you can; say so when you are unsure.",
)


def _task(rng: random.Random, passages: Sequence[str]) -> tuple[str, str]:
    """One (user, assistant) turn: a demo arithmetic or instruction task, or free text of a few passages."""
    kind = rng.random()
    if kind < 0.3:
        problem = make_problem(rng)
        return problem.question, problem.worked_answer
    if kind < 0.5:
        item = make_instruction(rng)
        return item.prompt, item.good_response
    return rng.choice(passages)[: rng.randint(40, 200)], rng.choice(passages)


def passage_pools(seed: int = 0) -> tuple[list[str], list[str]]:
    """Two disjoint pools of free-text passages over one vocabulary: for the tokenizer, and for the records."""
    passages = synthetic_prompts(2 * TEXT_POOL, seed=seed)
    return passages[:TEXT_POOL], passages[TEXT_POOL:]


def chat_records(count: int, seed: int = 0, passages: Sequence[str] | None = None) -> list[dict]:
    """``count`` SFT records ``{"messages": [...]}``, deterministic in ``seed``; free text from ``passages``
    (default: the records' pool of ``passage_pools(seed)``)."""
    rng = random.Random(seed)
    passages = passage_pools(seed)[1] if passages is None else passages
    records = []
    for _ in range(count):
        messages = [{"role": "system", "content": rng.choice(SYSTEM_PROMPTS)}] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 3)):
            user, assistant = _task(rng, passages)
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
            if sum(len(message["content"]) for message in messages) > MAX_CHARACTERS:
                break  # keeps nearly every conversation within a 512-token row
        records.append({"messages": messages})
    return records


def build_tokenizer(directory: str, seed: int = 0, vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Train the byte-level BPE on records of the same language but other passages (and another seed), and load it."""
    records = chat_records(5000, seed=seed + 1, passages=passage_pools(seed)[0])
    corpus = [message["content"] for record in records for message in record["messages"]]
    return load_tokenizer(train_bpe_tokenizer(corpus, directory, vocab_size=vocab_size))


def pipeline_pass(records: Sequence[dict], tokenizer: Tokenizer, length: int = ROW_LENGTH) -> dict:
    """Encode every record (template + tokenize + labels), pack into rows of ``length``; seconds and counts.

    ``template_seconds`` times the chat template alone in a separate pass over the same records; the
    ``encode`` pass includes it, so tokenization's share is ``encode_seconds - template_seconds``.
    """
    encoder = ExampleEncoder(tokenizer, DataConfig(tokenizer="local", max_seq_len=length))
    start = time.perf_counter()
    for record in records:
        encoder.segments(record["messages"], False, encoder.config.train_on)
    template_seconds = time.perf_counter() - start

    start = time.perf_counter()
    examples = [example for example in map(encoder.sft, records) if example is not None]
    encode_seconds = time.perf_counter() - start
    start = time.perf_counter()
    rows = pack_examples(examples, length, tokenizer.pad_id)
    pack_seconds = time.perf_counter() - start

    encoded_tokens = sum(len(example) for example in examples)
    packed_tokens = int(np.count_nonzero(rows["segment_ids"]))
    if packed_tokens != encoded_tokens:
        raise AssertionError(f"packing lost tokens: {encoded_tokens} encoded, {packed_tokens} in rows")
    return {
        "records": len(records), "examples": len(examples), "truncated": encoder.truncated,
        "tokens": packed_tokens, "trained_tokens": int(np.count_nonzero(rows["labels"] != -100)),
        "rows": len(rows["input_ids"]), "packing_efficiency": packed_tokens / rows["segment_ids"].size,
        "template_seconds": template_seconds, "encode_seconds": encode_seconds, "pack_seconds": pack_seconds,
    }


def sft_step_tokens_per_second(warmup: int, reps: int) -> tuple[float, list[float]]:
    """Median tokens/s of the small-preset SFT step (batch × length tokens per step) and the step seconds."""
    from benchmarks.sft_step import BATCH, LENGTH, jax_stepper, synthetic_batch  # jax only when timing the step
    from tulu_jax.models import preset

    config = preset("small")
    run_one, step = jax_stepper(config, synthetic_batch(config.vocab_size))
    seconds = []
    for rep in range(warmup + reps):
        start = time.perf_counter()
        run_one()  # returns a float loss, so the step has finished
        if rep >= warmup:
            seconds.append(time.perf_counter() - start)
    if step.compile_count != 1:
        raise AssertionError(f"the SFT step compiled {step.compile_count} times")
    return BATCH * LENGTH / statistics.median(seconds), seconds


def run(quick: bool = False, records: int | None = None, seed: int = 0) -> dict:
    """Pipeline tokens/s, its breakdown, the SFT step's tokens/s and their ratio against the target."""
    count = records or (20_000 if quick else 100_000)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        tokenizer = build_tokenizer(directory, seed)
    tokenizer_seconds = time.perf_counter() - start
    start = time.perf_counter()
    data = chat_records(count, seed)
    generate_seconds = time.perf_counter() - start
    measured = pipeline_pass(data, tokenizer)
    characters = sum(len(message["content"]) for record in data for message in record["messages"])

    pipeline_seconds = measured["encode_seconds"] + measured["pack_seconds"]
    pipeline_rate = measured["tokens"] / pipeline_seconds
    tokenize_seconds = measured["encode_seconds"] - measured["template_seconds"]
    shares = {"chat_template": measured["template_seconds"], "tokenize_and_labels": tokenize_seconds,
              "pack": measured["pack_seconds"]}
    step_rate, step_seconds = sft_step_tokens_per_second(*((1, 2) if quick else (2, 5)))
    ratio = pipeline_rate / step_rate
    return {
        "vocab_size": tokenizer.vocab_size, "row_length": ROW_LENGTH, **measured,
        "mean_tokens_per_record": measured["tokens"] / measured["examples"],
        # Tokens/s depends on how much text a token covers; the tokenizer's cost is mostly per character.
        "content_characters_per_token": characters / measured["tokens"],
        "pipeline_seconds": pipeline_seconds,
        "pipeline_tokens_per_second": pipeline_rate,
        "share_of_pipeline_time": {name: value / pipeline_seconds for name, value in shares.items()},
        "dominant_part": max(shares, key=shares.get),
        "tokenizer_training_seconds": tokenizer_seconds, "record_generation_seconds": generate_seconds,
        "sft_step_seconds": step_seconds,
        "sft_step_tokens_per_second": step_rate,
        "ratio": ratio, "target_ratio": TARGET_RATIO, "meets_target": ratio >= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 records and 2 timed SFT steps")
    parser.add_argument("--records", type=int, default=None, help="chat records (default 100,000; 20,000 with --quick)")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, records=args.records), indent=2))


if __name__ == "__main__":
    main()
