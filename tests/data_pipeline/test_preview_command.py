"""`tulu-jax data preview` renders examples with trained spans marked and writes token rows as JSONL."""

import json

import numpy as np
import yaml

from tulu_jax.cli import main

from .conftest import sft_record, write_jsonl


def test_preview_marks_trained_spans_and_writes_rows(tmp_path, tokenizer_dir, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", [sft_record("What is 2+2?", "4", system="Be brief."),
                                                  sft_record("Name a colour.", "Blue")])
    config = tmp_path / "stage.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"ignored": True},  # other sections of a stage config are ignored by the preview
        "data": {"sources": [{"path": str(data)}], "tokenizer": str(tokenizer_dir), "max_seq_len": 128},
    }))
    out = tmp_path / "rows.jsonl"
    assert main(["data", "preview", "--config", str(config), "--n", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "<|system|>\nBe brief.\n<|user|>\nWhat is 2+2?\n<|assistant|>\n[[4<|end_of_text|>]]" in printed
    assert "[[Blue<|end_of_text|>]]" in printed and "train.jsonl line 2" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and set(rows[0]) == {"input_ids", "labels", "segment_ids", "positions"}
    ids, labels = np.array(rows[1]["input_ids"]), np.array(rows[1]["labels"])
    assert np.all((labels == -100) | (labels == ids)) and rows[1]["positions"] == list(range(len(ids)))


def test_preview_reports_config_errors_cleanly(tmp_path, capsys):
    config = tmp_path / "stage.yaml"
    config.write_text(yaml.safe_dump({"data": {"packing": "zipped"}}))
    assert main(["data", "preview", "--config", str(config)]) == 1
    assert "data.packing" in capsys.readouterr().err
