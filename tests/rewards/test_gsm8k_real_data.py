"""The GSM8K verifier on every real gold solution (7,473 train + 1,319 test), from the project's own copy."""

import json
from pathlib import Path

import pytest

import data_pipeline
from tulu_jax.rewards.gsm8k import verify_gsm8k

ASSETS = Path(data_pipeline.__file__).parent / "assets" / "gsm8k"


def _load(split):
    with open(ASSETS / f"{split}.jsonl", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [(row["answer"], row["answer"].split("####")[-1].strip()) for row in rows]


@pytest.fixture(scope="module", params=[("train", 7473), ("test", 1319)], ids=["train", "test"])
def split(request):
    name, expected_rows = request.param
    rows = _load(name)
    assert len(rows) == expected_rows
    return rows


def test_gold_answer_is_accepted(split):
    rejected = [label for _, label in split if verify_gsm8k(label, label) != 1.0]
    assert rejected == []


def test_whole_gold_solution_is_accepted(split):
    rejected = [label for solution, label in split if verify_gsm8k(solution, label) != 1.0]
    assert rejected == []


def test_perturbed_answer_is_rejected(split):
    accepted = []
    for solution, label in split:
        wrong = str(int(label.replace(",", "")) + 1)
        perturbed = solution.rsplit("####", 1)[0] + "#### " + wrong
        if verify_gsm8k(perturbed, label) != 0.0 or verify_gsm8k(wrong, label) != 0.0:
            accepted.append(label)
        negated = "-" + label if not label.startswith("-") else label[1:]
        if label.replace(",", "") != "0" and verify_gsm8k(f"The answer is {negated}.", label) != 0.0:
            accepted.append(negated)
    assert accepted == []


def test_reference_mode_rejects_only_comma_or_negative_labels(split):
    # The reference compares strings: labels written "1,000" or "-3" fail against their own gold solution.
    rejected = [label for solution, label in split if verify_gsm8k(solution, label, reference_compatible=True) != 1.0]
    assert rejected, "expected some labels with thousands separators in the real data"
    assert all("," in label or label.startswith("-") for label in rejected)
