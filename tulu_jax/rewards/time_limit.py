"""Run symbolic answer checks in a separate worker process that is killed when it overruns its time limit.

sympy can spend unbounded time (or hang in C arithmetic, where no signal reaches it) on a crafted
answer, so the check never runs in the caller's process: a persistent ``python -m
tulu_jax.rewards.symbolic_worker`` child answers one JSON request a line; a request that takes longer
than the limit gets the child killed, the answer "not equal", and a fresh child on the next call.
Thread-safe; the child imports sympy, never JAX.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import subprocess
import sys
import threading
import time

DEFAULT_SECONDS = 2.0
_STARTUP_SECONDS = 120.0  # importing sympy on a loaded machine; not charged to any check


class SymbolicChecker:
    """Checks ``expressions_equal(a, b)`` in a worker process, giving up after ``seconds`` per check."""

    def __init__(self, seconds: float = DEFAULT_SECONDS):
        self.seconds = seconds
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.timeouts = 0  # how many checks were cut off (a figure worth logging)

    def _start(self) -> subprocess.Popen:
        # The child must find this package even when the caller changed sys.path at run time.
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
        process = subprocess.Popen(
            [sys.executable, "-m", "tulu_jax.rewards.symbolic_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=environment,
        )
        if self._read_line(process, _STARTUP_SECONDS) != "ready":
            self._kill(process)
            raise RuntimeError("the symbolic answer checker failed to start")
        return process

    @staticmethod
    def _read_line(process: subprocess.Popen, seconds: float) -> str | None:
        """One line from the child within ``seconds``, else None."""
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return None
        line = process.stdout.readline()
        return line.strip() if line else None

    @staticmethod
    def _kill(process: subprocess.Popen) -> None:
        process.kill()
        process.wait()

    def equal(self, first: str, second: str, method: str = "sympy", seconds: float | None = None) -> bool:
        """True when the worker's ``method`` judge (``sympy``, ``math_verify``) proves ``first == second``
        within the time limit (or ``seconds``, when shorter); False otherwise."""
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._process = self._start()
            process = self._process
            try:
                process.stdin.write(json.dumps({"first": first, "second": second, "method": method}) + "\n")
                process.stdin.flush()
            except BrokenPipeError:
                self._process = None
                return False
            line = self._read_line(process, self.seconds if seconds is None else min(seconds, self.seconds))
            if line is None:
                self.timeouts += 1
                self._kill(process)
                self._process = None
                return False
            try:
                return bool(json.loads(line).get("equal"))
            except (ValueError, AttributeError):
                return False

    def close(self) -> None:
        """Stop the worker (a new one starts on the next check)."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                self._kill(self._process)
            self._process = None


_DEFAULT_CHECKER: SymbolicChecker | None = None
_DEFAULT_LOCK = threading.Lock()


def default_checker() -> SymbolicChecker:
    """The process-wide checker (created on first use, stopped at exit)."""
    global _DEFAULT_CHECKER
    with _DEFAULT_LOCK:
        if _DEFAULT_CHECKER is None:
            _DEFAULT_CHECKER = SymbolicChecker()
            atexit.register(_DEFAULT_CHECKER.close)
        return _DEFAULT_CHECKER
