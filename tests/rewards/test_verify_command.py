"""``tulu-jax verify``: scores a JSONL file, prints a per-dataset table, reports bad lines by file and line."""

import json

import pytest

from tulu_jax import cli
from tulu_jax.commands import verify
from tulu_jax.errors import DataError


def _write(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


RECORDS = [
    {"response": "So 1,000 apples.", "ground_truth": "1000", "dataset": "gsm8k", "messages": [{"role": "user", "content": "q"}]},
    {"response": "The answer is 7.", "ground_truth": "8", "dataset": "gsm8k"},
    {"response": r"$\boxed{\dfrac12}$", "ground_truth": r"\frac{1}{2}", "dataset": "MATH"},
    {"response": "hello world", "ground_truth": json.dumps({"func_name": "validate_lowercase"}), "dataset": "ifeval"},
]


def test_cli_writes_scores_and_prints_summary(tmp_path, capsys):
    source = _write(tmp_path / "in.jsonl", RECORDS)
    target = tmp_path / "out" / "scored.jsonl"
    assert cli.main(["verify", "--input", str(source), "--out", str(target), "--alpha", "2"]) == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["score"] for row in rows] == [1.0, 0.0, 1.0, 1.0]
    assert [row["reward"] for row in rows] == [2.0, 0.0, 2.0, 2.0]
    assert rows[0]["messages"] == RECORDS[0]["messages"]
    table = capsys.readouterr().out
    gsm8k_row = next(line for line in table.splitlines() if line.startswith("gsm8k"))
    assert gsm8k_row.split() == ["gsm8k", "2", "0.5000", "0.5000"]
    assert next(line for line in table.splitlines() if line.startswith("all")).split() == ["all", "4", "0.7500", "0.7500"]


def test_bad_json_line_names_file_and_line(tmp_path):
    source = _write(tmp_path / "in.jsonl", [RECORDS[0], "{broken"])
    with pytest.raises(DataError, match=r"in\.jsonl:2: not valid JSON"):
        verify.verify_file(source, tmp_path / "out.jsonl")


def test_missing_field_names_file_and_line(tmp_path):
    source = _write(tmp_path / "in.jsonl", [{"response": "x", "dataset": "gsm8k"}])
    with pytest.raises(DataError, match=r"in\.jsonl:1: missing field\(s\) ground_truth"):
        verify.verify_file(source, tmp_path / "out.jsonl")


def test_unknown_dataset_is_reported_without_traceback(tmp_path, capsys):
    source = _write(tmp_path / "in.jsonl", [{"response": "x", "ground_truth": "1", "dataset": "poetry"}])
    assert cli.main(["verify", "--input", str(source), "--out", str(tmp_path / "o.jsonl")]) == 1
    error = capsys.readouterr().err
    assert "in.jsonl:1" in error and "registered: gsm8k" in error and "Traceback" not in error


def test_strip_prompt_scores_only_the_assistant_turn(tmp_path):
    # The prompt mentions the right number; the reply does not: only stripping the prompt scores it 0.
    record = {"response": "<|user|>\nIs it 3?\n<|assistant|>\nI do not know.", "ground_truth": "3", "dataset": "gsm8k"}
    source = _write(tmp_path / "in.jsonl", [record])
    assert verify.verify_file(source, tmp_path / "a.jsonl", strip_prompt=True) == {"gsm8k": (1, 0.0, 0)}
    assert verify.verify_file(source, tmp_path / "b.jsonl", strip_prompt=False) == {"gsm8k": (1, 1.0, 1)}


def test_out_equal_to_input_is_refused_and_input_kept(tmp_path, capsys):
    source = _write(tmp_path / "in.jsonl", RECORDS)
    before = source.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    for out in (source, tmp_path / "sub" / ".." / "in.jsonl", link):
        assert cli.main(["verify", "--input", str(source), "--out", str(out)]) == 1
        error = capsys.readouterr().err
        assert "is the --input file" in error and "Traceback" not in error
    assert source.read_bytes() == before


def test_failed_run_leaves_no_partial_output(tmp_path):
    source = _write(tmp_path / "in.jsonl", [RECORDS[0], "{broken"])
    target = _write(tmp_path / "out.jsonl", ["previous"])
    with pytest.raises(DataError, match="in.jsonl:2"):
        verify.verify_file(source, target)
    assert target.read_text() == "previous\n" and sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


def test_non_utf8_line_names_file_and_line(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(json.dumps(RECORDS[0]).encode() + b"\n" + b'{"response": "\xff"}\n')
    with pytest.raises(DataError, match=r"in\.jsonl:2: not valid UTF-8 \(byte 0xff"):
        verify.verify_file(source, tmp_path / "out.jsonl")
