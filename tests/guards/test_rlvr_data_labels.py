"""RLVR checks every record's verifier name and label while preparing the data, so an unknown dataset name or a
malformed IFEval ground truth is one line naming the file and line (issue 28 finding 12). Before, the stage
passed no ``known_datasets`` to ``prepare_data`` and the record failed at the rollout step that drew it."""

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tests.tpu import launch

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "rlvr_tiny_cpu.yaml")


def prompt(dataset, ground_truth) -> dict:
    return {"messages": [{"role": "user", "content": "What is 2 + 2?"}], "ground_truth": ground_truth,
            "dataset": dataset}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Path:
    return build_tiny_tokenizer(tmp_path_factory.mktemp("rlvr_labels") / "tokenizer")


@pytest.mark.parametrize("bad, named", [
    (prompt("gsm9k", "4"), "dataset 'gsm9k' names no verifier"),
    (prompt("ifeval", '{"func_name": "no_such_check"}'), "ground_truth for 'ifeval'"),
    (prompt("ifeval", "not json"), "ground_truth for 'ifeval'"),
])
def test_a_bad_record_is_refused_at_data_preparation_with_its_line(tokenizer, tmp_path, bad, named):
    good = [prompt("GSM8K", "4"), prompt(["gsm8k", "ifeval"], ["4", '{"func_name": "validate_lowercase"}'])]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in [*good, bad, *good]))
    done = subprocess.run(
        [launch.TULU_JAX, "rlvr", "--config", CONFIG, f"output_dir={tmp_path / 'run'}", f"data.sources=[{{path: {data}}}]",
         "data.eval_sources=[]", f"data.tokenizer={tokenizer}", "training.tensorboard=false"],
        env=launch.environment(1), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"{data} line 3: " in done.stderr and named in done.stderr, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
