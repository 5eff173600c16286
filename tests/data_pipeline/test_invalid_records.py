"""Bad input gives an error naming the file and line/row and what is wrong, or — under ``skip`` — is dropped
and counted by reason; an empty dataset after filtering is an error."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.config import DataConfig, SourceConfig
from data_pipeline.errors import DataError
from data_pipeline.pipeline import prepare_data

from .conftest import sft_record, write_jsonl

GOOD = [sft_record(f"question {i}", f"answer {i}") for i in range(4)]


def _config(tokenizer_dir, path, **overrides):
    return DataConfig(sources=(SourceConfig(str(path)),), tokenizer=str(tokenizer_dir), max_seq_len=64, **overrides)


def _prepare(config, kind=None):
    lines = []
    return prepare_data(config, kind=kind, log=lines.append), lines


BAD_SFT = {
    "bad_role": ({"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]},
                 "message 2 has role 'bot'; roles must be system, user or assistant"),
    "empty_content": ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}]},
                      "message 2 (assistant) has empty content"),
    "bad_content": ({"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "x"}]},
                    "content must be a string"),
    "no_assistant_turn": ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant message"),
    "missing_field": ({"conversation": []}, "missing field 'messages'"),
}


@pytest.mark.parametrize("reason", sorted(BAD_SFT))
def test_bad_sft_record_error_names_file_and_line(reason, tmp_path, tokenizer_dir):
    record, message = BAD_SFT[reason]
    path = write_jsonl(tmp_path / "train.jsonl", [*GOOD[:2], record, *GOOD[2:]])
    with pytest.raises(DataError) as error:
        _prepare(_config(tokenizer_dir, path, kind="sft"))
    assert "train.jsonl line 3: " in str(error.value) and message in str(error.value)


def test_skip_policy_drops_and_counts_each_reason(tmp_path, tokenizer_dir):
    bad = [BAD_SFT[reason][0] for reason in sorted(BAD_SFT)] + [BAD_SFT["bad_role"][0]]
    path = write_jsonl(tmp_path / "train.jsonl", [*GOOD, *bad])
    data, lines = _prepare(_config(tokenizer_dir, path, kind="sft", invalid_records="skip"))
    assert int((data.train["segment_ids"].max(axis=1)).sum()) == len(GOOD)  # the good ones all made it
    report = next(line for line in lines if "skipped" in line)
    assert "6 dropped" in report and "bad_role: 2" in report and "no_assistant_turn: 1" in report


def test_truncated_json_line(tmp_path, tokenizer_dir):
    path = write_jsonl(tmp_path / "train.jsonl", GOOD)
    path.write_text(path.read_text() + '{"messages": [{"role": "user", "cont\n')
    with pytest.raises(DataError, match=r"train.jsonl line 5: not valid JSON .*truncated"):
        _prepare(_config(tokenizer_dir, path))


def test_parquet_missing_column_names_row_and_columns(tmp_path, tokenizer_dir):
    path = tmp_path / "prefs.parquet"
    pq.write_table(pa.Table.from_pylist([{"chosen": GOOD[0]["messages"], "prompt": "x"}]), path)
    with pytest.raises(DataError, match=r"prefs.parquet row 1: missing field 'rejected' \(the record has 'chosen', 'prompt'\)"):
        _prepare(_config(tokenizer_dir, path, kind="preference"))


def test_empty_after_filtering(tmp_path, tokenizer_dir):
    path = write_jsonl(tmp_path / "train.jsonl", [BAD_SFT["bad_role"][0]] * 3)
    with pytest.raises(DataError, match=r"no valid sft records .*bad_role: 3"):
        _prepare(_config(tokenizer_dir, path, kind="sft", invalid_records="skip"))
    # Every example truncated inside its prompt: nothing to train on is an error too, with the counts.
    path = write_jsonl(tmp_path / "long.jsonl", [sft_record("word " * 100, "ok")])
    with pytest.raises(DataError, match=r"no training examples left .*no_trained_token: 1"):
        _prepare(_config(tokenizer_dir, path))


def test_preference_prompts_must_match(tmp_path, tokenizer_dir):
    chosen = GOOD[0]["messages"]
    rejected = [{"role": "user", "content": "another question"}, chosen[1]]
    path = write_jsonl(tmp_path / "prefs.jsonl", [{"chosen": chosen, "rejected": rejected}])
    with pytest.raises(DataError, match="prefs.jsonl line 1: 'chosen' and 'rejected' must share the same prompt"):
        _prepare(_config(tokenizer_dir, path))


def test_rlvr_needs_ground_truth_and_dataset(tmp_path, tokenizer_dir):
    prompt = [{"role": "user", "content": "What is 6 times 7?"}]
    records = [{"messages": prompt, "ground_truth": "42", "dataset": "gsm8k"},
               {"messages": prompt, "ground_truth": "", "dataset": "gsm8k"}]
    path = write_jsonl(tmp_path / "rlvr.jsonl", records)
    with pytest.raises(DataError, match="rlvr.jsonl line 2: 'ground_truth' must be a non-empty string"):
        _prepare(_config(tokenizer_dir, path))
    write_jsonl(path, [{"messages": prompt, "dataset": "gsm8k"}])
    with pytest.raises(DataError, match="rlvr.jsonl line 1: missing field 'ground_truth'"):
        _prepare(_config(tokenizer_dir, path, kind="rlvr"))


def test_missing_files_are_clear(tmp_path, tokenizer_dir):
    with pytest.raises(DataError, match="data source not found"):
        _prepare(_config(tokenizer_dir, tmp_path / "nope.jsonl", kind="sft"))
    path = write_jsonl(tmp_path / "train.jsonl", GOOD)
    with pytest.raises(DataError, match="tokenizer not found"):
        _prepare(DataConfig(sources=(SourceConfig(str(path)),), tokenizer=str(tmp_path)))


def test_non_utf8_bytes_name_file_and_line(tmp_path, tokenizer_dir):
    path = write_jsonl(tmp_path / "train.jsonl", GOOD)
    path.write_bytes(path.read_bytes() + b'{"messages": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"train.jsonl line 5: not valid UTF-8 \(byte 0xe9 at column 18\)"):
        _prepare(_config(tokenizer_dir, path))


def test_truncated_gzip_names_file_and_line(tmp_path, tokenizer_dir):
    import gzip

    path = tmp_path / "train.jsonl.gz"
    many = [sft_record(f"question {i} " * 20, f"answer {i}") for i in range(200)]
    path.write_bytes(gzip.compress("".join(__import__("json").dumps(r) + "\n" for r in many).encode()))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"train.jsonl.gz line \d+: the gzip stream is truncated or corrupt"):
        _prepare(_config(tokenizer_dir, path))


def test_data_preview_refuses_an_out_that_is_a_data_source(tmp_path, tokenizer_dir, capsys):
    import yaml

    from tulu_jax.cli import main

    data = write_jsonl(tmp_path / "train.jsonl", GOOD)
    before = data.read_bytes()
    config = tmp_path / "stage.yaml"
    config.write_text(yaml.safe_dump({"data": {"sources": [{"path": str(data)}], "tokenizer": str(tokenizer_dir)}}))
    # The source itself (through a relative spelling), a file inside a source directory, and the config.
    directory_source = tmp_path / "shards"
    directory_source.mkdir()
    write_jsonl(directory_source / "a.jsonl", GOOD)
    for out in (tmp_path / "." / "train.jsonl", directory_source / "preview.jsonl", config):
        override = [f"data.sources=[{{path: {data}}}, {{path: {directory_source}}}]"]
        assert main(["data", "preview", "--config", str(config), "--out", str(out), *override]) == 1
        error = capsys.readouterr().err
        assert "would destroy an input" in error and "Traceback" not in error
    assert data.read_bytes() == before and not (directory_source / "preview.jsonl").exists()
