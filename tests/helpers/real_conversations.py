"""Real conversations from the bundled GSM8K data (data_pipeline/assets/gsm8k), for tests on a real model."""

from __future__ import annotations

import json
import re
from pathlib import Path

GSM8K = Path(__file__).resolve().parents[2] / "data_pipeline" / "assets" / "gsm8k"


def gsm8k_rows(split: str, count: int, start: int = 0) -> list[dict]:
    """``count`` rows (question, answer) of the bundled GSM8K ``split`` from row ``start``, in file order."""
    rows = []
    with (GSM8K / f"{split}.jsonl").open() as source:
        for index, line in enumerate(source):
            if index >= start + count:
                break
            if index >= start:
                rows.append(json.loads(line))
    return rows


def final_number(answer: str) -> str:
    return answer.rsplit("####", 1)[1].strip()


def worked_answer(answer: str) -> str:
    """GSM8K's worked answer without its ``<<a=b>>`` calculator notes, ending "The answer is N."."""
    steps = re.sub(r"<<[^>]*>>", "", answer.rsplit("####", 1)[0]).strip()
    return f"{steps}\nThe answer is {final_number(answer)}."


def single_turn(row: dict) -> list[dict]:
    return [{"role": "user", "content": row["question"]}, {"role": "assistant", "content": worked_answer(row["answer"])}]


def multi_turn(rows: list[dict]) -> list[dict]:
    """One conversation asking each question in turn, each answered."""
    return [message for row in rows for message in single_turn(row)]
