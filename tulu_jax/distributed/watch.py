"""Once joined, a process that stops (killed, or ended by an error) stops the others within seconds, in one line.

A watch thread asks the coordination service every ``POLL_SECONDS`` whether a process posted a stop notice (the
one line it ended with) and which processes are alive. On either, it prints one line and exits the process
(status 1): a run is whole or not running, and the same command on every host resumes it.

The coordination service runs in recoverable mode (``jax_enable_recoverability``): a process that dies is
reported as no longer alive instead of making the service abort every other process natively. Asking who is
alive is a barrier among the live processes (``get_live_nodes``), so only the watch thread asks, on every
process, in step. Process 0 hosts the service and leaves last: when the run ends (well or not) its watch
waits, at most ``LEAVE_SECONDS``, until the others have disconnected, so none of them aborts natively.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Callable, Optional

from tulu_jax.distributed.coordination import client as _client

POLL_SECONDS = 1.0
LEAVE_SECONDS = 5.0  # the others leave within a poll or two of a stop notice
STOP_PREFIX = "tulu_jax/stop/"  # + "<process id>/<member>": the one line a process ended with
MEMBER_PREFIX = "tulu_jax/member/"  # + "<process id>": "<host>:<pid>" of the process that joined as it


class PeerWatch:
    """The watch of one process; ``report`` is how any part of this process ends a multi-process run."""

    def __init__(self, process_id: int, num_processes: int, exit_process: Callable[[int], None] = os._exit,
                 client=None) -> None:
        self.process_id, self.num_processes = process_id, num_processes
        self._exit = exit_process
        self._client = client
        self._lock = threading.Lock()
        self._ending = False
        self._alone = threading.Event()  # process 0: the others have gone
        self._thread = threading.Thread(target=self._watch, name="tulu-peer-watch", daemon=True)
        self.member = f"{socket.gethostname()}:{os.getpid()}"
        self._stop_key = f"{STOP_PREFIX}{process_id}/{self.member}"
        self._shared_line: Optional[str] = None  # a refusal every process reaches by itself (refusals.py)

    @property
    def client(self):
        return self._client or _client()

    def start(self) -> "PeerWatch":
        """Claim this process id (two processes started with one TULU_PROCESS_ID are refused), then watch."""
        from tulu_jax.errors import DistributedError

        try:
            self.client.key_value_set(f"{MEMBER_PREFIX}{self.process_id}", self.member)
        except Exception:
            other = _try_get(self.client, f"{MEMBER_PREFIX}{self.process_id}")
            message = (f"two processes joined this run as process {self.process_id} ({other} and {self.member}); "
                       f"give each its own TULU_PROCESS_ID (0..{self.num_processes - 1})")
            self._post_stop(message)  # the others stop with the same line
            raise DistributedError(message) from None
        self._thread.start()
        return self

    # -- the ways a run ends -------------------------------------------------------------------------------

    def report(self, line: str, code: int = 1) -> None:
        """End this process with ``line`` (worded for the user), after posting it for the others."""
        if not self._claim_ending():
            self._exit(code)
            return
        if line.removeprefix("error: ") != self._shared_line:
            self._post_stop(line.removeprefix("error: "))
        _say(line)
        self._leave(code)

    def expect_shared_line(self, message: str) -> None:
        """Every process ends with ``message`` by itself: ending with it posts no notice that would stop the
        others with a different line first."""
        self._shared_line = message

    def give_the_watch_time(self) -> None:
        """Wait a few polls: when an error here is the symptom of a peer that died (a collective that lost its
        partner), the watch names that peer in one line and exits this process meanwhile."""
        time.sleep(2 * POLL_SECONDS + 0.5)

    def notify_others(self, summary: str) -> None:
        """An unexpected error here (its traceback follows): tell the others, and let this process end."""
        self.give_the_watch_time()
        if not self._claim_ending():
            return
        self._post_stop(f"{summary} (its traceback is in its log)")
        if self.process_id == 0:
            self._alone.wait(LEAVE_SECONDS)

    def finish(self, barrier: Callable[[], None]) -> None:
        """The orderly end of a run that succeeded: everyone at ``barrier``, then process 0 leaves last."""
        barrier()
        self._claim_ending()
        if self.process_id == 0:
            self._alone.wait(LEAVE_SECONDS)
            return
        self._thread.join(LEAVE_SECONDS)
        import jax

        try:
            jax.distributed.shutdown()  # disconnect now, while process 0 still hosts the service
        except Exception:
            pass

    # -- internals -------------------------------------------------------------------------------------------

    def _claim_ending(self) -> bool:
        """True for the first caller only: one process prints one line, however many things go wrong."""
        with self._lock:
            if self._ending:
                return False
            self._ending = True
            return True

    def _post_stop(self, message: str) -> None:
        try:
            self.client.key_value_set(self._stop_key, message)
        except Exception:
            pass  # the service is gone already; the others notice that on their own

    def _leave(self, code: int) -> None:
        """Exit without the native shutdown (it aborts once the service is gone); process 0 after the others."""
        if self.process_id == 0:
            self._alone.wait(LEAVE_SECONDS)
        self._exit(code)

    def _watch(self) -> None:
        everyone = list(range(self.num_processes))
        while True:
            try:
                alive = set(self.client.get_live_nodes(everyone))
                notices = [(key, value) for key, value in self.client.key_value_dir_get(STOP_PREFIX)
                           if key != self._stop_key]
            except Exception as error:  # the service itself is gone: process 0 stopped
                if not self._ending:
                    self._end_from_watch(
                        f"lost the coordinator ({_first_line(error)}): process 0 stopped, or another process joined "
                        f"as process {self.process_id} and took this one's place (each needs its own TULU_PROCESS_ID)")
                self._alone.set()
                return
            if self._ending:
                if self.process_id != 0 or alive <= {0}:
                    self._alone.set()
                    return
                time.sleep(0.1)
                continue
            reason = self._reason_to_stop(alive, notices)
            if reason is not None:
                threading.Thread(target=self._end_from_watch, args=(reason,), daemon=True).start()
                if self.process_id != 0:
                    return
                continue  # process 0 keeps asking who is alive until the others have gone
            time.sleep(POLL_SECONDS)

    def _reason_to_stop(self, alive: set[int], notices: list[tuple[str, str]]) -> Optional[str]:
        if notices:
            key, message = notices[0]
            return f"process {key[len(STOP_PREFIX):].split('/')[0]} stopped: {message}"
        if self.process_id not in alive:
            return (f"another process joined this run as process {self.process_id} and took its place (two "
                    "processes started with one TULU_PROCESS_ID?)")
        gone = [index for index in range(self.num_processes) if index not in alive]
        if gone:
            names = ", ".join(map(str, gone))
            return f"process{'es' if len(gone) > 1 else ''} {names} of this run stopped without finishing " \
                   "(killed, preempted or crashed)"
        return None

    def _end_from_watch(self, reason: str) -> None:
        if not self._claim_ending():
            return
        _say(f"error: {reason}; process {self.process_id} stops too. Rerun the same command on every host: it "
             "resumes from the newest checkpoint")
        self._leave(1)


def _try_get(client, key: str) -> str:
    try:
        return client.key_value_try_get(key)
    except Exception:
        return "another process"


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _say(line: str) -> None:
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)


_watch: Optional[PeerWatch] = None


def start_watch(process_id: int, num_processes: int) -> PeerWatch:
    global _watch
    _watch = PeerWatch(process_id, num_processes).start()
    return _watch


def current_watch() -> Optional[PeerWatch]:
    return _watch
