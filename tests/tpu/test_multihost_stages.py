"""``tulu-jax sft`` then ``tulu-jax dpo`` on 2 processes × 4 CPU devices equal the 1-process 8-device runs.

Both are launched as ``tpu_scripts/launch.sh`` launches a pod: the same command on each process, only the
``TULU_*`` environment differing. The SFT run starts from a Hugging Face checkpoint and both write to one
shared ``output_dir``. Checked: per-step losses (1e-5), exports (1e-6), the startup line and the first line
of ``metrics.jsonl``, and that no process gathered a whole array (``assert_equal``/``process_allgather``).

Six processes compile the two stages' programs on 2 cores: about five minutes.
"""

import json
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from tests.helpers.killed_runs import assert_same_weights
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tests.stages.preference_fixtures import write_pairs
from tests.tpu import launch
from tests.training.sft_data import write_sft_jsonl
from tulu_jax.hf import read_checkpoint_dir, save_hf_checkpoint
from tulu_jax.models import init_params, preset

TIMEOUT = 1200
MESH = ["mesh.data=2", "mesh.fsdp=2", "mesh.tensor=2"]


def sft_arguments(workspace, output_dir):
    return ["sft", "--config", "configs/sft_tiny_cpu.yaml", f"output_dir={output_dir}",
            f"model.source={workspace / 'base_hf'}", "model.overrides={}",
            f"data.sources=[{{path: {workspace / 'sft.jsonl'}}}]", f"data.tokenizer={workspace / 'tokenizer'}",
            "training.max_steps=4", "training.log_every=1", "training.tensorboard=false",
            "checkpoint.save_every=2", "checkpoint.async_save=false", *MESH]


def dpo_arguments(workspace, sft_output, output_dir):
    return ["dpo", "--config", "configs/dpo_tiny_cpu.yaml", f"output_dir={output_dir}",
            f"model.source={sft_output}", "model.overrides={}",
            f"data.sources=[{{path: {workspace / 'pairs.jsonl'}}}]", f"data.tokenizer={workspace / 'tokenizer'}",
            "data.max_seq_len=48", "data.eval_fraction=0.2", "dpo.reference_cache_dir=''", "training.max_steps=3",
            "training.log_every=1", "checkpoint.save_every=1", *MESH]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    config = preset("tiny", vocab_size=512)
    save_hf_checkpoint(root / "base_hf", jax.device_get(init_params(config, jax.random.PRNGKey(3))), config)
    write_sft_jsonl(root / "sft.jsonl")
    write_pairs(root / "pairs.jsonl", 80)
    build_tiny_tokenizer(root / "tokenizer")
    launch.install_gather_counter(root / "counter")
    return root


def run_both(workspace, name, arguments_for):
    return launch.single_and_multi(workspace, name, arguments_for, TIMEOUT)


@pytest.fixture(scope="module")
def sft_runs(workspace):
    return run_both(workspace, "sft", lambda out: sft_arguments(workspace, out))


@pytest.fixture(scope="module")
def dpo_runs(workspace, sft_runs):
    (sft_single, sft_multi), _ = sft_runs
    return run_both(workspace, "dpo", lambda out: dpo_arguments(workspace, sft_multi if "multi" in out.name else sft_single, out))


def metric_rows(output_dir, key):
    rows = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    return rows[0], [row[key] for row in rows if key in row and "step" in row]


def assert_exports_equal(first, second, atol):
    ours, theirs = read_checkpoint_dir(first / "hf"), read_checkpoint_dir(second / "hf")
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], atol=atol, rtol=0, err_msg=name)


def test_sft_on_two_processes_equals_one_process(sft_runs):
    (single_dir, multi_dir), (single, multi) = sft_runs
    single_header, single_losses = metric_rows(single_dir, "loss")
    multi_header, multi_losses = metric_rows(multi_dir, "loss")
    assert len(multi_losses) == 4 and len(set(np.round(multi_losses, 4))) > 1  # trained, so not a constant
    np.testing.assert_allclose(multi_losses, single_losses, rtol=1e-5)
    assert_exports_equal(single_dir, multi_dir, atol=1e-6)
    # Each process wrote its checkpoint shards into the shared directory; process 0 alone wrote the rest.
    assert sorted(p.name for p in (multi_dir / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    assert (multi_header["process_count"], multi_header["device_count"]) == (2, 8)
    assert (single_header["process_count"], single_header["device_count"]) == (1, 8)


def test_startup_line_is_printed_once_by_the_primary(sft_runs):
    _, (single, multi) = sft_runs
    assert "processes: 2, devices: 8 (local 4)" in multi.stderr[0]
    assert "processes:" not in multi.stderr[1] and "step 1" not in multi.stderr[1]
    assert "processes: 1, devices: 8 (local 8)" in single.stderr[0]


def test_each_process_tokenizes_half_of_the_records(sft_runs):
    _, (single, multi) = sft_runs
    assert "tokenized 16 of 32 records on this process (1 of 2)" in multi.stderr[0]
    assert "records on this process" not in single.stderr[0]


def test_dpo_from_the_sft_output_on_two_processes_equals_one_process(dpo_runs):
    (single_dir, multi_dir), _ = dpo_runs
    _, single_losses = metric_rows(single_dir, "loss")
    header, multi_losses = metric_rows(multi_dir, "loss")
    assert len(multi_losses) == 3
    np.testing.assert_allclose(multi_losses, single_losses, rtol=1e-5)
    assert_exports_equal(single_dir, multi_dir, atol=1e-6)
    assert (header["process_count"], header["device_count"]) == (2, 8)
    # The reference cache lives under output_dir, not in a per-host default.
    assert list((multi_dir / "reference_logps").glob("*.npz"))


def test_no_process_gathered_a_whole_array(workspace, dpo_runs):
    counts = launch.gather_counts(workspace / "counter")
    assert counts["processes"] == 4  # two SFT and two DPO processes reported
    assert (counts["assert_equal"], counts["process_allgather"]) == (0, 0)


def test_a_killed_process_stops_its_peer_and_both_resume_to_the_same_export(workspace, dpo_runs):
    """SIGKILL one process of a 2-process DPO run after its first checkpoint: the survivor exits with an
    error within 120 s; the same two commands rerun resume, and the export is bit-identical."""
    (_, uninterrupted), _ = dpo_runs
    sft_multi = workspace / "sft_multi"
    output_dir = workspace / "dpo_killed"
    arguments = dpo_arguments(workspace, sft_multi, output_dir)
    logs = workspace / "logs" / "dpo_killed"
    processes = launch.start(arguments, 2, 4, logs)
    deadline = time.monotonic() + TIMEOUT
    while not (output_dir / "checkpoints" / "1").is_dir():
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), "no checkpoint appeared"
        time.sleep(0.2)
    processes[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    try:
        survivor_code = processes[0].wait(timeout=120)
    except subprocess.TimeoutExpired:
        processes[0].kill()
        pytest.fail("the surviving process did not stop within 120 s of its peer's death")
    assert survivor_code != 0 and time.monotonic() - killed_at < 120
    # One line says why, with no traceback or native abort (tests/tpu/test_multihost_faults.py times it).
    survivor_log = (logs / "process-0.log").read_text()
    assert len([line for line in survivor_log.splitlines() if line.startswith("error:")]) == 1, survivor_log[-3000:]
    assert "Traceback" not in survivor_log and "Check failure" not in survivor_log, survivor_log[-3000:]
    rerun = launch.run(arguments, 2, 4, workspace / "logs" / "dpo_rerun", timeout=TIMEOUT)
    assert rerun.returncodes == [0, 0], rerun.stderr[0][-3000:]
    assert "resumed from" in rerun.stderr[0]
    assert_same_weights(output_dir / "hf", uninterrupted / "hf")
