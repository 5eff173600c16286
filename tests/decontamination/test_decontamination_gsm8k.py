"""Real data: GSM8K train (7,473 questions) against GSM8K test (1,319 questions)."""

import json
import shutil
from pathlib import Path

import pytest

import data_pipeline
from data_pipeline.decontaminate import decontaminate_files
from tests.decontamination.decontamination_reference import reference_fraction

GSM8K = Path(data_pipeline.__file__).parent / "assets" / "gsm8k"


@pytest.fixture(scope="module")
def gsm8k_report():
    if not (GSM8K / "train.jsonl").exists():
        pytest.skip("GSM8K assets not present")
    return decontaminate_files([GSM8K / "train.jsonl"], [GSM8K / "test.jsonl"], progress=False)


def questions(name):
    return [json.loads(line)["question"] for line in open(GSM8K / name, encoding="utf-8")]


def test_gsm8k_train_barely_overlaps_test(gsm8k_report):
    """Two test questions are near-copies of train questions with other names and numbers; nothing else."""
    summary, = gsm8k_report.summaries
    assert gsm8k_report.train_instances[str(GSM8K / "train.jsonl")] == 7473
    assert summary.eval_instances == 1319
    found = sorted((m.train_line, m.eval_line, round(m.matched_fraction, 4)) for m in gsm8k_report.matches)
    # Test 603 ("A plane travels 1200 miles in 3 hours. At the same rate, ...") matches train 1315 and 5163;
    # test 633 (Max's snowflake/truck/rose stamps) matches train 21 (Bella's stamps).
    assert found == [(21, 633, 0.625), (1315, 603, 0.76), (5163, 603, 0.76)]
    assert not summary.contaminated  # 2 / 1319 = 0.15% < 2%
    train, test = questions("train.jsonl"), questions("test.jsonl")
    for train_line, eval_line, fraction in found:
        assert reference_fraction(test[eval_line - 1], train[train_line - 1]) == pytest.approx(fraction)


def test_a_test_question_planted_in_train_is_found(tmp_path):
    if not (GSM8K / "train.jsonl").exists():
        pytest.skip("GSM8K assets not present")
    train_file = tmp_path / "train.jsonl"
    shutil.copy(GSM8K / "train.jsonl", train_file)
    planted = json.loads((GSM8K / "test.jsonl").read_text(encoding="utf-8").splitlines()[99])
    with open(train_file, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"messages": [{"role": "user", "content": "Q: " + planted["question"]},
                                              {"role": "assistant", "content": planted["answer"]}]}) + "\n")
    report = decontaminate_files([train_file], [GSM8K / "test.jsonl"], progress=False)
    assert [(m.train_line, m.eval_line, m.matched_fraction) for m in report.matches if m.train_line == 7474] == [
        (7474, 100, 1.0)
    ]
    assert len(report.matches) == 4
