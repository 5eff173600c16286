"""The fault times the README's Reliability section quotes: 2-process ``tulu-jax sft`` runs (1 CPU device each),
timed from launch (or from the kill) to exit. Run ``python -m tests.tpu.fault_times``; not a test."""

from __future__ import annotations

import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.tpu import launch
from tests.training.sft_data import make_run_inputs, tiny_overrides

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "sft_tiny_cpu.yaml")


class Runs:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs = root / "inputs"
        make_run_inputs(self.inputs)

    def sft(self, name: str, *extra: str) -> list[str]:
        return ["sft", "--config", CONFIG, *tiny_overrides(self.inputs, self.root / name, "training.tensorboard=false",
                                                          "checkpoint.save_every=0", *extra)]

    def start(self, arguments: list[str], process_id: int, address: str, log: str, **env: str) -> subprocess.Popen:
        environment = launch.environment(1, TULU_COORDINATOR_ADDRESS=address, TULU_NUM_PROCESSES="2",
                                         TULU_PROCESS_ID=str(process_id), **env)
        return subprocess.Popen([launch.TULU_JAX, *arguments], env=environment, stdout=(self.root / log).open("w"),
                                stderr=subprocess.STDOUT)

    def error_line(self, log: str) -> str:
        return [line for line in (self.root / log).read_text().splitlines() if line.startswith("error:")][-1][:160]


def address() -> str:
    return f"127.0.0.1:{launch.free_port()}"


def main() -> None:
    runs = Runs(Path(tempfile.mkdtemp(prefix="fault-times-")))

    began, where = time.monotonic(), address()
    pair = [runs.start(runs.sft("lr", f"optimizer.learning_rate={rate}"), index, where, f"lr{index}.log")
            for index, rate in enumerate(["1e-3", "2e-3"])]
    codes = [process.wait() for process in pair]
    print(f"different learning rates: exit {codes} {time.monotonic() - began:.1f} s after launch; "
          f"{runs.error_line('lr1.log')}")

    began = time.monotonic()
    code = runs.start(runs.sft("missing"), 0, address(), "missing.log", TULU_JOIN_TIMEOUT="10").wait()
    print(f"missing peer (TULU_JOIN_TIMEOUT=10): exit {code} {time.monotonic() - began:.1f} s after launch; "
          f"{runs.error_line('missing.log')}")

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        began = time.monotonic()
        code = runs.start(runs.sft("busy"), 0, f"127.0.0.1:{holder.getsockname()[1]}", "busy.log").wait()
    print(f"busy coordinator port: exit {code} {time.monotonic() - began:.1f} s after launch")

    began = time.monotonic()
    code = runs.start(runs.sft("host"), 1, "no-such-host.invalid:8476", "host.log").wait()
    print(f"coordinator host that does not resolve: exit {code} {time.monotonic() - began:.1f} s after launch")

    where = address()
    pair = [runs.start(runs.sft("dead", "training.max_steps=100000", "training.log_every=1"), index, where,
                       f"dead{index}.log") for index in range(2)]
    while "step 2" not in (runs.root / "dead0.log").read_text():
        time.sleep(0.2)
    pair[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    code = pair[0].wait()
    print(f"peer killed mid-run: the survivor exits {code} {time.monotonic() - killed_at:.1f} s later; "
          f"{runs.error_line('dead0.log')}")


if __name__ == "__main__":
    main()
