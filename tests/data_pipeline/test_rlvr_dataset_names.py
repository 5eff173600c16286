"""An RLVR record naming a verifier that does not exist is found while the data is prepared, with its file and
line (it used to pass preparation and stop the run at a rollout step)."""

import json

import pytest

from data_pipeline.config import DataConfig
from data_pipeline.errors import DataError
from data_pipeline.pipeline import prepare_data
from tulu_jax.cli import main
from tulu_jax.config import from_dict
from tulu_jax.rewards.registry import registered_datasets


def write_prompts(path, datasets):
    with path.open("w") as sink:
        for index, dataset in enumerate(datasets):
            sink.write(json.dumps({"messages": [{"role": "user", "content": f"What is {index} plus 1?"}],
                                   "ground_truth": str(index + 1), "dataset": dataset}) + "\n")
    return path


def test_an_unknown_verifier_name_is_an_error_naming_file_and_line(tmp_path, tokenizer_dir):
    path = write_prompts(tmp_path / "rlvr.jsonl", ["gsm8k", "math", "gsm8k", "gsm8kk", "ifeval"])
    config = from_dict(DataConfig, {"sources": [{"path": str(path)}], "tokenizer": str(tokenizer_dir), "kind": "rlvr"})
    with pytest.raises(DataError, match=r"rlvr.jsonl line 4.*'gsm8kk' names no verifier; known: .*gsm8k"):
        prepare_data(config, log=lambda line: None, known_datasets=registered_datasets())
    skipped = from_dict(DataConfig, {"sources": [{"path": str(path)}], "tokenizer": str(tokenizer_dir), "kind": "rlvr",
                                     "invalid_records": "skip"})
    prompts = prepare_data(skipped, log=lambda line: None, known_datasets=registered_datasets()).train
    assert [prompt["dataset"] for prompt in prompts] == ["gsm8k", "math", "gsm8k", "ifeval"]


def test_data_preview_checks_the_names_too(tmp_path, tokenizer_dir, capsys):
    path = write_prompts(tmp_path / "rlvr.jsonl", ["gsm8k", "nonsense"])
    config = tmp_path / "data.yaml"
    config.write_text(f"data:\n  sources: [{{path: {path}}}]\n  tokenizer: {tokenizer_dir}\n  kind: rlvr\n")
    assert main(["data", "preview", "--config", str(config)]) == 1
    assert "line 2" in capsys.readouterr().err
