"""Joining a multi-process run without silent waits: checks that fail at once, a bounded wait that says so.

Before ``jax.distributed`` is started: the coordinator host must resolve, and process 0 must be able to
listen on the coordinator port (a busy port is another program, or a second process 0). While the processes
join, each prints a progress line every ``PROGRESS_SECONDS`` (or a quarter of the wait); after ``join_timeout`` seconds a process still
waiting names who is missing in one line and exits (status 1), before JAX's own timeout would abort natively.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
import threading
import time
from typing import Callable

from tulu_jax.errors import DistributedError

ENV_JOIN_TIMEOUT = "TULU_JOIN_TIMEOUT"  # seconds every process waits for the others to join
PROGRESS_SECONDS = 10.0  # at most; a short join timeout gets a few lines too
# JAX's own deadline comes this much after ours, so that ours always speaks first.
NATIVE_DEADLINE_MARGIN = 60


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise DistributedError(f"coordinator address {address!r}: the port {port!r} is not a number "
                               "(TULU_COORDINATOR_ADDRESS=host:port, e.g. 10.0.0.2:8476)") from None
    if not 0 < number < 65536:
        raise DistributedError(f"coordinator address {address!r}: port {number} is outside 1..65535")
    return host, number


def check_host_resolves(address: str) -> None:
    """Raise DistributedError when the coordinator's host name does not resolve."""
    host, port = split_address(address)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise DistributedError(
            f"coordinator host {host!r} (TULU_COORDINATOR_ADDRESS={address}) does not resolve: {error.strerror}; "
            "give process 0's host name or IP address"
        ) from None


def check_port_free(address: str) -> None:
    """On process 0: raise DistributedError when something already listens on the coordinator port."""
    _, port = split_address(address)
    for family, any_host in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            probe = socket.socket(family, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 here: try IPv4
        with probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((any_host, port))
                return
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise DistributedError(
                        f"coordinator port {port} (TULU_COORDINATOR_ADDRESS={address}) is already in use on this "
                        "host: another program holds it, or another process was also started as process 0 "
                        "(each process needs its own TULU_PROCESS_ID); choose a free port or stop that process"
                    ) from None
                if family == socket.AF_INET6:
                    continue
                raise


def coordinator_answers(address: str, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at ``address``."""
    host, port = split_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def join_timeout_from_env(default: int, environ=None) -> int:
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_JOIN_TIMEOUT, "")
    if value == "":
        return default
    try:
        seconds = int(value)
    except ValueError:
        raise DistributedError(f"{ENV_JOIN_TIMEOUT}={value!r} must be a whole number of seconds") from None
    if seconds < 1:
        raise DistributedError(f"{ENV_JOIN_TIMEOUT}={value!r} must be at least 1 second")
    return seconds


def missing_message(address: str, process_id: int, num_processes: int, waited: int) -> str:
    """Who this process was waiting for when its join wait ran out, as exactly as it can tell."""
    others = [index for index in range(num_processes) if index != process_id]
    where = f"at {address} within {waited} s ({ENV_JOIN_TIMEOUT})"
    if process_id == 0:
        who = f"process {others[0]}" if len(others) == 1 else f"one or more of processes {others[0]}..{others[-1]}"
        return (f"{who} of this {num_processes}-process run did not join {where}; start the same command on every "
                f"host, each with its own TULU_PROCESS_ID (0..{num_processes - 1}), or raise {ENV_JOIN_TIMEOUT}")
    if not coordinator_answers(address):
        return (f"process 0 (the coordinator) did not answer {where}; start it, or check "
                "TULU_COORDINATOR_ADDRESS (its host and port)")
    return (f"the coordinator (process 0) answers, but not every process of 0..{num_processes - 1} joined {where}: "
            "a process is missing, or two were started with the same TULU_PROCESS_ID")


class JoinWatch:
    """While ``jax.distributed`` connects: progress lines, then a one-line error and exit at the deadline."""

    def __init__(self, address: str, process_id: int, num_processes: int, timeout: int,
                 exit_process: Callable[[int], None] = os._exit, stream=None) -> None:
        self.address, self.process_id, self.num_processes, self.timeout = address, process_id, num_processes, timeout
        self._exit, self._stream = exit_process, stream
        self._joined = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tulu-join-watch", daemon=True)

    def __enter__(self) -> "JoinWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._joined.set()
        self._thread.join()

    def _say(self, line: str) -> None:
        stream = self._stream or sys.stderr
        print(line, file=stream, flush=True)

    def _watch(self) -> None:
        began = time.monotonic()
        every = min(PROGRESS_SECONDS, max(self.timeout / 4, 1.0))
        while True:
            left = self.timeout - (time.monotonic() - began)
            if self._joined.wait(min(every, max(left, 0.0))):
                return
            waited = time.monotonic() - began
            if waited >= self.timeout:
                self._say("error: " + missing_message(self.address, self.process_id, self.num_processes, self.timeout))
                self._exit(1)
                return
            self._say(f"process {self.process_id} of {self.num_processes}: waiting for the others to join at "
                      f"{self.address} ({waited:.0f} s of {self.timeout} s, {ENV_JOIN_TIMEOUT})")
