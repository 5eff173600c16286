"""``tulu-jax eval`` and ``generate`` end to end on real GSM8K test problems with a tiny random model, and
the pass@k arithmetic."""

import json
import math
from pathlib import Path

import pytest

from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tulu_jax import cli
from tulu_jax.errors import DataError
from tulu_jax.generation.evaluate import pass_at_k, score_generations, summarize
from tulu_jax.hf import save_hf_checkpoint
from tests.generation.conftest import numpy_random_params
from tulu_jax.models import preset

GSM8K_TEST = Path(__file__).resolve().parents[2] / "data_pipeline" / "assets" / "gsm8k" / "test.jsonl"
PROBLEMS = 10


def gsm8k_rlvr_records(count):
    """The first ``count`` GSM8K test problems as RLVR records, with the gold solution kept aside."""
    records = []
    with open(GSM8K_TEST, encoding="utf-8") as source:
        for line in list(source)[:count]:
            problem = json.loads(line)
            records.append({
                "messages": [{"role": "user", "content": problem["question"]}],
                "ground_truth": problem["answer"].split("####")[-1].strip(),
                "dataset": "gsm8k",
                "gold_solution": problem["answer"],
            })
    return records


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random tiny Llama saved as a HF directory with a tiny BPE tokenizer (Tülu markers, EOS, pad)."""
    root = tmp_path_factory.mktemp("tiny_checkpoint")
    tokenizer_dir = build_tiny_tokenizer(root / "tokenizer")
    from data_pipeline.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir)
    config = preset("tiny", vocab_size=512, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
    return save_hf_checkpoint(root / "model", numpy_random_params(config), config, tokenizer_dir=tokenizer_dir)


def test_eval_command_reports_per_dataset_accuracy_and_writes_generations(tiny_checkpoint, tmp_path, capsys):
    records = gsm8k_rlvr_records(PROBLEMS)
    data = tmp_path / "gsm8k_rlvr.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "generations.jsonl"
    code = cli.main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(data), "--max-new-tokens", "8", "--batch-size", "16", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    summary = json.loads(next(line for line in printed.splitlines() if line.startswith("{")))
    assert set(summary["datasets"]) == {"gsm8k"}
    assert summary["datasets"]["gsm8k"]["count"] == PROBLEMS and summary["all"]["count"] == PROBLEMS
    assert summary["datasets"]["gsm8k"]["pass@1"] == 0.0  # a random model does not solve GSM8K
    assert "gsm8k" in printed and "pass@1" in printed
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(written) == PROBLEMS
    for record, original in zip(written, records):
        assert record["ground_truth"] == original["ground_truth"]
        assert len(record["generations"]) == 1 and isinstance(record["generations"][0], str)
        assert record["scores"] == [0.0] and len(record["stopped"]) == 1
    # The same verify path gives 1 to a generation that is the gold solution, and 0 to a wrong number.
    gold = [[record["gold_solution"]] for record in records]
    assert score_generations(records, gold) == [[1.0]] * PROBLEMS
    wrong = [[record["gold_solution"].rsplit("####", 1)[0] + "#### 123456789"] for record in records]
    assert score_generations(records, wrong) == [[0.0]] * PROBLEMS


@pytest.mark.slow
def test_generate_command_writes_response_and_stopped(tiny_checkpoint, tmp_path):
    data = tmp_path / "prompts.jsonl"
    data.write_text(
        json.dumps({"messages": [{"role": "user", "content": "What is 12 plus 30?"}], "id": 1}) + "\n"
        + json.dumps({"prompt": "Write a haiku about the sea."}) + "\n"
    )
    out = tmp_path / "responses.jsonl"
    code = cli.main([
        "generate", "--checkpoint", str(tiny_checkpoint), "--input", str(data), "--max-new-tokens", "8",
        "--temperature", "0.7", "--top-p", "0.9", "--seed", "3", "--out", str(out),
    ])
    assert code == 0
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [record.get("id") for record in written] == [1, None]
    assert all(isinstance(record["response"], str) and isinstance(record["stopped"], bool) for record in written)


def test_eval_rejects_records_without_ground_truth_naming_the_line(tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}], "dataset": "gsm8k"}) + "\n")
    assert cli.main(["eval", "--checkpoint", str(tiny_checkpoint), "--data", str(data)]) == 1
    assert f"{data}:1" in capsys.readouterr().err


def test_pass_at_k_is_the_unbiased_estimator():
    for n, c, k in [(10, 3, 1), (10, 3, 5), (16, 0, 4), (16, 16, 16), (8, 5, 4), (5, 1, 5)]:
        expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_summary_groups_by_dataset_and_reports_pass_at_k():
    records = [{"dataset": "gsm8k"}, {"dataset": "gsm8k"}, {"dataset": "MATH"}]
    scores = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.5, 0.0]]
    summary = summarize(records, scores)
    gsm8k, math_ = summary["datasets"]["gsm8k"], summary["datasets"]["math"]
    assert gsm8k["pass@1"] == pytest.approx((0.25 + 0.0) / 2)
    assert gsm8k["pass@4"] == pytest.approx(0.5)
    assert math_["pass@2"] == pytest.approx(1 - math.comb(2, 2) / math.comb(4, 2))  # 0.5 is not a pass
    assert math_["mean_score"] == pytest.approx(2.5 / 4)
    assert summary["all"]["count"] == 3 and summary["all"]["pass@1"] == pytest.approx((0.25 + 0 + 0.5) / 3)


def test_scoring_a_record_with_an_unknown_dataset_is_a_data_error():
    with pytest.raises(DataError, match="record 1"):
        score_generations([{"ground_truth": "1", "dataset": "no_such_verifier"}], [["1"]])
