"""Start ``tulu-jax`` the way ``tpu_scripts/launch.sh`` starts it on a pod: the same command on every
process, with only the ``TULU_*`` environment differing. Here the processes are local and each sees a
number of forced CPU devices; they join through ``jax.distributed`` with gloo collectives.

A ``sitecustomize`` on the ``PYTHONPATH`` counts calls of ``multihost_utils.assert_equal`` and
``process_allgather`` (the two ways a multi-host program gathers whole arrays) and writes the counts of
each process to ``$GATHER_COUNTS_DIR/<pid>.json`` at exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TULU_JAX = str(Path(sys.executable).with_name("tulu-jax"))
COMPILATION_CACHE = str(Path(tempfile.gettempdir()) / "tulu-jax-test-compilation-cache")

SITECUSTOMIZE = '''
import atexit, json, os
from jax.experimental import multihost_utils  # importing JAX touches no device

counts = {"assert_equal": 0, "process_allgather": 0}
for _name in counts:
    def _counted(*args, _original=getattr(multihost_utils, _name), _name=_name, **kwargs):
        counts[_name] += 1
        return _original(*args, **kwargs)
    setattr(multihost_utils, _name, _counted)

@atexit.register
def _write():
    with open(os.path.join(os.environ["GATHER_COUNTS_DIR"], f"{os.getpid()}.json"), "w") as sink:
        json.dump(counts, sink)
'''


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def install_gather_counter(directory: Path) -> Path:
    """A folder holding the counting ``sitecustomize.py``, and its ``counts/`` output folder."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (directory / "counts").mkdir(exist_ok=True)
    return directory


def gather_counts(directory: Path) -> dict[str, int]:
    totals = {"assert_equal": 0, "process_allgather": 0, "processes": 0}
    for file in (directory / "counts").glob("*.json"):
        counts = json.loads(file.read_text())
        totals["processes"] += 1
        for name, value in counts.items():
            totals[name] += value
    return totals


@dataclass
class Result:
    returncodes: list[int]
    stderr: list[str]
    seconds: float


def environment(devices: int, counter: Path | None = None, **tulu: str) -> dict:
    """The launch environment. Compiled programs are shared through a persistent cache: on 2 busy cores,
    processes compiling the same step can drift apart by more than the 30 s that gloo (the CPU stand-in
    for the TPU interconnect) waits for a peer to set up a collective."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TULU_")}
    env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
               TOKENIZERS_PARALLELISM="false", TULU_HEARTBEAT_TIMEOUT="30",
               JAX_COMPILATION_CACHE_DIR=COMPILATION_CACHE, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", **tulu)
    if counter is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(counter), env.get("PYTHONPATH", "")])
        env["GATHER_COUNTS_DIR"] = str(counter / "counts")
    return env


def start(arguments: list[str], processes: int, devices: int, log_dir: Path, counter: Path | None = None,
          cwd: Path | None = None) -> list[subprocess.Popen]:
    """``tulu-jax ARGUMENTS`` as ``processes`` processes of ``devices`` CPU devices each (stderr to files)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    started = []
    for rank in range(processes):
        tulu = {} if processes == 1 else {
            "TULU_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "TULU_NUM_PROCESSES": str(processes),
            "TULU_PROCESS_ID": str(rank),
        }
        sink = open(log_dir / f"process-{rank}.log", "w")
        started.append(subprocess.Popen([TULU_JAX, *arguments], env=environment(devices, counter, **tulu),
                                        stdout=sink, stderr=subprocess.STDOUT, cwd=cwd))
    return started


def wait(processes: list[subprocess.Popen], log_dir: Path, timeout: float) -> Result:
    began = time.monotonic()
    for process in processes:
        remaining = max(timeout - (time.monotonic() - began), 1)
        try:
            process.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.send_signal(signal.SIGKILL)
            break
    logs = [(log_dir / f"process-{rank}.log").read_text() for rank in range(len(processes))]
    return Result([process.wait() for process in processes], logs, time.monotonic() - began)


def run(arguments: list[str], processes: int, devices: int, log_dir: Path, counter: Path | None = None,
        timeout: float = 900) -> Result:
    return wait(start(arguments, processes, devices, log_dir, counter), log_dir, timeout)


def single_and_multi(workspace: Path, name: str, arguments_for, timeout: float = 900) -> tuple[tuple[Path, Path], tuple[Result, Result]]:
    """One command as 1 process x 8 devices and as 2 processes x 4 (the latter counting gathers), side by side.

    ``arguments_for(output_dir)`` gives the ``tulu-jax`` arguments; both runs must succeed. Returns the two
    output_dirs and results, single first."""
    directories = (workspace / f"{name}_single", workspace / f"{name}_multi")
    logs = (workspace / "logs" / f"{name}_single", workspace / "logs" / f"{name}_multi")
    started = (start(arguments_for(directories[0]), 1, 8, logs[0]),
               start(arguments_for(directories[1]), 2, 4, logs[1], workspace / "counter"))
    results = tuple(wait(processes, log_dir, timeout) for processes, log_dir in zip(started, logs))
    for result in results:
        assert result.returncodes == [0] * len(result.returncodes), "\n\n".join(log[-3000:] for log in result.stderr)
    return directories, results


def killed_and_rerun(arguments: list[str], output_dir: Path, checkpoint: int, log_dir: Path,
                     timeout: float = 900) -> Result:
    """Start ``tulu-jax ARGUMENTS`` as 2 processes × 4 devices, SIGKILL both once ``checkpoint`` is saved under
    ``output_dir``, check nothing was exported, and rerun the same commands (which must resume and succeed)."""
    processes = start(arguments, 2, 4, log_dir / "killed")
    deadline = time.monotonic() + timeout
    while not (output_dir / "checkpoints" / str(checkpoint)).is_dir():
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes), "no checkpoint appeared"
        time.sleep(0.2)
    for process in processes:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not (output_dir / "hf").exists()
    rerun = run(arguments, 2, 4, log_dir / "rerun", timeout=timeout)
    assert rerun.returncodes == [0, 0], rerun.stderr[0][-3000:]
    assert "resumed from" in rerun.stderr[0]
    return rerun


def rlvr_workspace(tmp_path_factory, name: str) -> Path:
    """A folder with the RLVR runs' inputs (a Hugging Face policy, prompts) and the gather counter."""
    from tests.helpers.rlvr_inputs import make_rlvr_inputs

    root = tmp_path_factory.mktemp(name)
    make_rlvr_inputs(root)
    install_gather_counter(root / "counter")
    return root
