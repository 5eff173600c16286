"""`generate` and `eval` refuse an --out that is one of their inputs, before loading any model."""

import json

import pytest

from tulu_jax import cli
from tulu_jax.errors import DataError
from tulu_jax.jsonl import read_jsonl, refuse_overwriting_inputs


def _records(path):
    record = {"messages": [{"role": "user", "content": "1+1?"}], "ground_truth": "2", "dataset": "gsm8k"}
    path.write_text(json.dumps(record) + "\n")
    return path


@pytest.mark.parametrize("command", ["generate", "eval"])
def test_out_that_is_an_input_is_refused(command, tmp_path, capsys):
    data = _records(tmp_path / "data.jsonl")
    before = data.read_bytes()
    checkpoint = tmp_path / "model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    flag = "--input" if command == "generate" else "--data"
    for out, what in ((data, f"{flag} file"), (checkpoint / "config.json", "--checkpoint")):
        argv = [command, flag, str(data), "--checkpoint", str(checkpoint), "--out", str(out)]
        assert cli.main(argv) == 1
        error = capsys.readouterr().err
        assert f"the {what}" in error and "would destroy an input" in error and "Traceback" not in error
    assert data.read_bytes() == before and (checkpoint / "config.json").read_text() == "{}"


def test_hard_link_is_the_same_file(tmp_path):
    data = _records(tmp_path / "data.jsonl")
    (tmp_path / "alias.jsonl").hardlink_to(data)
    with pytest.raises(DataError, match="is the input"):
        refuse_overwriting_inputs(tmp_path / "alias.jsonl", [("input", data)])
    refuse_overwriting_inputs(tmp_path / "other.jsonl", [("input", data), ("unused", None)])  # a new file is fine


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xc3("}\n')
    with pytest.raises(DataError, match=r"data\.jsonl:2: not valid UTF-8 \(byte 0xc3 at column 8\)"):
        read_jsonl(path)
