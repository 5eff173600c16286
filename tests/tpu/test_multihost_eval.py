"""``tulu-jax eval`` and ``generate`` on a pod (issue 30, item 3): launched as 2 processes × 4 CPU devices the way
``tpu_scripts/launch.sh`` starts workers, they write byte for byte the file that 1 process × 8 devices writes,
from a Hugging Face directory and (slow) with every location on ``gs://`` (the local GCS emulator). The model is
read sharded (no process gathers a whole array), each process verifies its own share of the records, and
process 0 alone writes. A bad checkpoint is refused on both processes with the same line.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import gcs_emulator
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tests.test_gcs_emulator import bucket  # noqa: F401 - the emulator fixture
from tests.tpu import launch

TIMEOUT = 600
GSM8K_TEST = Path(__file__).resolve().parents[2] / "data_pipeline" / "assets" / "gsm8k" / "test.jsonl"
PROBLEMS = 12


def gsm8k_records(count: int) -> list[dict]:
    records = []
    for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines()[:count]:
        problem = json.loads(line)
        records.append({"messages": [{"role": "user", "content": problem["question"]}],
                        "ground_truth": problem["answer"].split("####")[-1].strip(), "dataset": "gsm8k"})
    return records


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A random tiny Llama saved as a HF directory with the tiny tokenizer, RLVR records, and plain prompts."""
    from data_pipeline.tokenizer import load_tokenizer
    from tests.generation.conftest import numpy_random_params
    from tulu_jax.hf import save_hf_checkpoint
    from tulu_jax.models import preset

    root = tmp_path_factory.mktemp("multihost_eval")
    tokenizer_dir = build_tiny_tokenizer(root / "tokenizer")
    tokenizer = load_tokenizer(tokenizer_dir)
    config = preset("tiny", vocab_size=512, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id)
    save_hf_checkpoint(root / "model", numpy_random_params(config, seed=5), config, tokenizer_dir=tokenizer_dir)
    records = gsm8k_records(PROBLEMS)
    (root / "records.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    (root / "prompts.jsonl").write_text("".join(json.dumps({"messages": record["messages"][:1], "id": number}) + "\n"
                                                for number, record in enumerate(records[:5])))
    launch.install_gather_counter(root / "counter")
    return root


def eval_arguments(checkpoint, data, out=None) -> list[str]:
    # Two samples per record, drawn at temperature 1: the sampled path and pass@k, not only greedy decoding.
    return ["eval", "--checkpoint", str(checkpoint), "--data", str(data), *(["--out", str(out)] if out else []),
            "--n-samples", "2", "--temperature", "1.0", "--seed", "7", "--max-new-tokens", "6", "--batch-size", "16"]


@pytest.fixture(scope="module")
def eval_runs(workspace):
    """The eval run as 1 process × 8 devices and as 2 × 4: output folders and results, single first."""
    return launch.single_and_multi(
        workspace, "eval",
        lambda out: eval_arguments(workspace / "model", workspace / "records.jsonl", out / "results.jsonl"), TIMEOUT)


def test_eval_on_two_processes_writes_the_file_one_process_writes(workspace, eval_runs):
    (single, multi), (single_run, multi_run) = eval_runs
    written = (multi / "results.jsonl").read_bytes()
    assert written == (single / "results.jsonl").read_bytes()
    rows = [json.loads(line) for line in written.decode().splitlines()]
    assert len(rows) == PROBLEMS and all(len(row["generations"]) == len(row["scores"]) == 2 for row in rows)
    assert len({text for row in rows for text in row["generations"]}) > PROBLEMS  # sampled, not all alike
    # Process 0 alone writes and prints; the summaries of both launches are the same.
    summaries = [[line for line in run.stderr[0].splitlines() if line.startswith('{"datasets"')]
                 for run in (single_run, multi_run)]
    assert summaries[0] == summaries[1] and len(summaries[0]) == 1
    assert '{"datasets"' not in multi_run.stderr[1] and "wrote" not in multi_run.stderr[1]
    # The model is read sharded and the prompts, keys and token limits enter as global arrays: no process
    # compares or gathers host data.
    counts = launch.gather_counts(workspace / "counter")
    assert counts["processes"] == 2 and counts["assert_equal"] == 0, counts


def test_a_missing_checkpoint_is_refused_on_both_processes_with_the_same_line(workspace, tmp_path):
    missing = tmp_path / "no_such_model"
    result = launch.run(eval_arguments(missing, workspace / "records.jsonl", tmp_path / "out.jsonl"), 2, 4,
                        tmp_path / "logs", timeout=120)
    print(f"both processes ended {result.seconds:.1f} s after launch")  # 14 s here, JAX's start included
    assert result.returncodes == [1, 1], result.stderr
    assert result.seconds < 60, result.seconds  # refused before loading anything, not at a peer's timeout
    lines = [[line for line in log.splitlines() if line.startswith("error:")] for log in result.stderr]
    assert lines[0] == lines[1] and len(lines[0]) == 1, lines
    assert str(missing) in lines[0][0] and "does not exist" in lines[0][0]
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.slow
def test_generate_on_two_processes_writes_the_file_one_process_writes(workspace):
    (single, multi), _ = launch.single_and_multi(
        workspace, "generate",
        lambda out: ["generate", "--checkpoint", str(workspace / "model"), "--input", str(workspace / "prompts.jsonl"),
                     "--out", str(out / "responses.jsonl"), "--temperature", "0.8", "--seed", "3",
                     "--max-new-tokens", "6"], TIMEOUT)
    written = (multi / "responses.jsonl").read_bytes()
    assert written == (single / "responses.jsonl").read_bytes()
    rows = [json.loads(line) for line in written.decode().splitlines()]
    assert [row["id"] for row in rows] == list(range(5)) and all(isinstance(row["response"], str) for row in rows)


@pytest.mark.slow
def test_eval_with_every_location_on_gs_writes_the_file_of_a_local_run(workspace, eval_runs, bucket, tmp_path):
    """Checkpoint, tokenizer and records in the bucket; the results land beside the records there (the default
    ``--out``). The emulator's environment is this process's (the ``bucket`` fixture), which the launch passes on."""
    from data_pipeline.paths import as_path

    gs = f"gs://{gcs_emulator.BUCKET}/eval"
    for file in (workspace / "model").iterdir():
        as_path(f"{gs}/model/{file.name}").write_bytes(file.read_bytes())
    as_path(f"{gs}/records.jsonl").write_bytes((workspace / "records.jsonl").read_bytes())
    result = launch.run(eval_arguments(f"{gs}/model", f"{gs}/records.jsonl"), 2, 4, tmp_path / "logs", timeout=TIMEOUT)
    assert result.returncodes == [0, 0], "\n\n".join(log[-3000:] for log in result.stderr)
    (single, _), _ = eval_runs
    assert as_path(f"{gs}/records.generations.jsonl").read_bytes() == (single / "results.jsonl").read_bytes()
    assert f"to {gs}/records.generations.jsonl" in result.stderr[0]
