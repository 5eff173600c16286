"""Two processes joined by ``jax.distributed`` on CPU train exactly like one process with all 8 devices.

Each process has 4 forced CPU devices and feeds only its share of every global batch; the (2, 2, 2) mesh
spans both. The per-step SFT losses, and a step replayed from an Orbax checkpoint written by both
processes together, must equal the single-process run's.

Three processes each compile the step (about 35 s of CPU each): over a minute on 2 cores.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("sft_worker.py")
TIMEOUT = 900  # three jax processes compile the step at once; slow on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(devices: int, **extra: str) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith("TULU_")}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu", **extra)
    return env


def _run(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        try:
            _, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail(f"a worker did not finish within {TIMEOUT} s")
        assert process.returncode == 0, stderr.decode()[-3000:]





@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    single_out, multi_out = root / "single.json", root / "multi.json"
    port = _free_port()
    pipes = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    processes = [subprocess.Popen([sys.executable, str(WORKER), str(single_out), str(root / "ckpt_single")], env=_environment(8), **pipes)]
    processes += [
        subprocess.Popen(
            [sys.executable, str(WORKER), str(multi_out), str(root / "ckpt_multi")],
            env=_environment(4, TULU_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", TULU_NUM_PROCESSES="2", TULU_PROCESS_ID=str(rank)),
            **pipes,
        )
        for rank in range(2)
    ]
    _run(processes)
    return json.loads(single_out.read_text()), json.loads(multi_out.read_text())


def test_two_processes_share_the_devices_and_the_batch(runs):
    single, multi = runs
    assert (single["process_count"], single["device_count"], single["local_rows"]) == (1, 8, 8)
    assert (multi["process_count"], multi["device_count"], multi["local_rows"]) == (2, 8, 4)


def test_two_processes_give_the_single_process_losses(runs):
    single, multi = runs
    assert len(multi["losses"]) == 3
    assert multi["losses"] == pytest.approx(single["losses"], rel=1e-5)
    # Training moved: the loss changes from step to step (so equal losses are not a constant).
    assert len({round(loss, 4) for loss in multi["losses"]}) == 3


def test_checkpoint_written_by_both_processes_restores_the_step(runs):
    single, multi = runs
    assert multi["replayed_loss"] == pytest.approx(multi["losses"][-1], rel=1e-6)
    assert multi["restored_data_state"] == {"next_batch": 2}
    assert single["replayed_loss"] == pytest.approx(single["losses"][-1], rel=1e-6)
