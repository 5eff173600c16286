"""Tokenization divided among processes gives every process the rows one process would build alone.

Two "processes" are two threads here, joined by an in-memory exchange with the contract of the multi-host
one (each posts its bytes, all read all); the CLI test in tests/tpu runs the real one across processes.
"""

import threading

import numpy as np
import pytest

from data_pipeline.config import DataConfig
from data_pipeline.errors import DataError
from data_pipeline.pipeline import prepare_data
from data_pipeline.work_share import WorkShare
from tulu_jax.config import from_dict

from .conftest import sft_record, write_jsonl


def run_divided(config: DataConfig, count: int, kind: str = "sft"):
    posted: dict = {}
    barrier = threading.Barrier(count)
    results, errors = [None] * count, [None] * count

    def exchange(name, payload, index):
        posted[(name, index)] = payload
        barrier.wait()
        return [posted[(name, other)] for other in range(count)]

    def work(index):
        share = WorkShare(index, count, lambda name, payload: exchange(name, payload, index))
        try:
            results[index] = prepare_data(config, kind=kind, log=lambda line: None, share=share)
        except DataError as error:
            errors[index] = str(error)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def test_divided_tokenization_equals_one_process(tmp_path, tokenizer_dir):
    records = [sft_record(f"question number {i}", "answer " * (i % 7 + 1) * (6 if i % 9 == 4 else 1)) for i in range(45)]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    config = from_dict(DataConfig, {"sources": [{"path": str(path)}], "tokenizer": str(tokenizer_dir),
                                    "max_seq_len": 40, "eval_fraction": 0.2, "truncation": "drop"})
    alone_lines = []
    alone = prepare_data(config, log=alone_lines.append)
    divided, errors = run_divided(config, 3)
    assert errors == [None] * 3
    for result in divided:
        for split in ("train", "eval"):
            ours, reference = getattr(result, split), getattr(alone, split)
            assert sorted(ours) == sorted(reference)
            for key in reference:
                np.testing.assert_array_equal(ours[key], reference[key])
        # Drop counts are those of the whole data set, not of one block.
        reported = [line for line in result.summary if line.startswith("tokenized examples")]
        assert reported == [line for line in alone_lines if line.startswith("tokenized examples")]
        assert "dropped (longer_than_max_seq_len" in reported[0]
    assert any(line.startswith("tokenized 15 of 45 records on this process (1 of 3)") for line in divided[0].summary)


def test_a_bad_record_in_one_block_stops_every_process_naming_its_line(tmp_path, tokenizer_dir):
    records = [sft_record(f"question {i}", "answer") for i in range(10)]
    records[8]["messages"][0]["role"] = "wizard"
    path = write_jsonl(tmp_path / "train.jsonl", records)
    config = from_dict(DataConfig, {"sources": [{"path": str(path)}], "tokenizer": str(tokenizer_dir),
                                    "max_seq_len": 64, "invalid_records": "error"})
    try:
        prepare_data(config, log=lambda line: None)
    except DataError as error:
        alone = str(error)
    else:
        pytest.skip("the pipeline accepts this record")
    _, errors = run_divided(config, 2)
    assert errors == [alone, alone] and "line 9" in alone
