"""Write the demo's SFT, preference, RLVR and held-out eval sets and train its tokenizer, from one seed."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from data_pipeline.demo.arithmetic import make_problem
from data_pipeline.demo.instructions import make_instruction
from data_pipeline.tokenizer_training import train_bpe_tokenizer


@dataclass(frozen=True)
class DemoFiles:
    sft: Path
    preference: Path
    rlvr: Path
    eval: Path
    tokenizer: Path


@dataclass(frozen=True)
class _Task:
    prompt: str
    good: str
    bad: str
    ground_truth: str
    dataset: str


def _tasks(rng: random.Random, arithmetic_share: float) -> Iterator[_Task]:
    while True:
        if rng.random() < arithmetic_share:
            problem = make_problem(rng)
            yield _Task(problem.question, problem.worked_answer, problem.wrong_answer(rng), str(problem.answer), "gsm8k")
        else:
            item = make_instruction(rng)
            yield _Task(item.prompt, item.good_response, item.bad_response, item.ground_truth, "ifeval")


def _unique_tasks(rng: random.Random, count: int, arithmetic_share: float, seen: set[str]) -> list[_Task]:
    tasks = []
    for task in _tasks(rng, arithmetic_share):
        if task.prompt in seen:
            continue
        seen.add(task.prompt)
        tasks.append(task)
        if len(tasks) == count:
            return tasks
    raise AssertionError("unreachable")


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def _user(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def build_demo_data(
    directory: str | Path,
    seed: int = 0,
    *,
    sft_size: int = 2000,
    preference_size: int = 1000,
    rlvr_size: int = 1000,
    eval_size: int = 200,
    arithmetic_share: float = 0.75,
    vocab_size: int = 512,
) -> DemoFiles:
    """Write the four JSONL sets (no prompt appears in two of them) and the tokenizer into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    seen: set[str] = set()
    # The eval set is drawn first so that no training split can take one of its prompts.
    held_out = _unique_tasks(rng, eval_size, arithmetic_share, seen)
    sft = _unique_tasks(rng, sft_size, arithmetic_share, seen)
    preference = _unique_tasks(rng, preference_size, arithmetic_share, seen)
    rlvr = _unique_tasks(rng, rlvr_size, arithmetic_share, seen)

    def rlvr_record(task: _Task) -> dict:
        return {"messages": _user(task.prompt), "ground_truth": task.ground_truth, "dataset": task.dataset}

    files = DemoFiles(
        sft=_write_jsonl(
            directory / "sft.jsonl",
            [{"messages": _user(t.prompt) + [{"role": "assistant", "content": t.good}]} for t in sft],
        ),
        preference=_write_jsonl(
            directory / "preference.jsonl",
            [
                {
                    "chosen": _user(t.prompt) + [{"role": "assistant", "content": t.good}],
                    "rejected": _user(t.prompt) + [{"role": "assistant", "content": t.bad}],
                }
                for t in preference
            ],
        ),
        rlvr=_write_jsonl(directory / "rlvr.jsonl", [rlvr_record(t) for t in rlvr]),
        eval=_write_jsonl(directory / "eval.jsonl", [rlvr_record(t) for t in held_out]),
        tokenizer=directory / "tokenizer",
    )
    corpus = [f"{t.prompt}\n{t.good}\n{t.bad}" for t in sft + preference + rlvr]
    train_bpe_tokenizer(corpus, files.tokenizer, vocab_size=vocab_size)
    return files
