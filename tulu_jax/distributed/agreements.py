"""Agreements between the processes of a run, by name, on the coordination service (no device work).

Every agreement's key is its call site's name and the step it belongs to (``"export written" @ step 120``),
so processes meet at the same key whatever each did before, not at the n-th call. A call without a step is
numbered per site (the 3rd ``"keep best"``): give the step where there is one.

A missed or added call fails at once, naming both calls: each process also posts which key it entered as
its n-th agreement, and while it waits it compares the others' n-th keys. A key entered twice on one
process is refused at once (two calls of one site need their steps). Only the last ``KEPT`` agreements of
each process stay in the service's memory.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Union

from tulu_jax.distributed.coordination import client, is_primary, process_count, process_index
from tulu_jax.errors import DistributedError

AGREEMENT_PREFIX = "tulu_jax/agreement/"  # + "<site>/<step>/<process or 'value'>"
POSITION_PREFIX = "tulu_jax/at/"  # + "<n>/<process>": the key of that process's n-th agreement
POLL_MS = 250  # how often a waiting process looks for a peer that took another path
KEPT = 64  # agreements per process whose keys stay in the service (a peer lags far less behind)

Step = Union[int, str, None]


@dataclass(frozen=True)
class Entry:
    """One agreement as this process entered it."""

    count: int  # this process's n-th agreement
    key: str  # "<site>/<step>"

    @property
    def label(self) -> str:
        return describe(self.key)


def describe(key: str) -> str:
    site, _, step = key.rpartition("/")
    return f"'{site}' ({'call ' + step[1:] if step.startswith('#') else 'step ' + step})"


class Ledger:
    """The agreements this process has entered, and the keys it must clean up."""

    def __init__(self) -> None:
        self.count = 0
        self.keys: set[str] = set()
        self.calls: collections.Counter = collections.Counter()
        self.written: collections.deque = collections.deque()  # (count, service key) this process set

    def enter(self, site: str, step: Step) -> Entry:
        self.calls[site] += 1
        key = f"{site.replace('/', '|')}/{step if step is not None else '#' + str(self.calls[site])}"
        if key in self.keys:
            raise DistributedError(f"the agreement {describe(key)} was reached twice by process {process_index()}; "
                                   "each call of one site needs its own step")
        self.keys.add(key)
        self.count += 1
        entry = Entry(self.count, key)
        self.write(entry, f"{POSITION_PREFIX}{entry.count}/{process_index()}", key)
        return entry

    def write(self, entry: Entry, service_key: str, value: str) -> None:
        client().key_value_set(service_key, value)
        self.written.append((entry.count, service_key))
        while self.written and self.written[0][0] <= entry.count - KEPT:
            try:
                client().key_value_delete(self.written.popleft()[1])
            except Exception:
                pass  # already gone with the service; nothing to free


_ledger = Ledger()  # one per process, like the coordination service client it writes through


def barrier(site: str, step: Step = None, timeout_seconds: int = 3600) -> None:
    """Wait until every process has reached ``site`` at ``step``."""
    if process_count() > 1:
        _posted_by_all(site, step, "", timeout_seconds)


def agreed(site: str, value: str, step: Step = None, timeout_seconds: int = 3600) -> str:
    """Process 0's ``value`` on every process. Decisions that change which collectives run (a cache hit, a
    resume step) are taken once, this way."""
    if process_count() == 1:
        return value
    entry = _ledger.enter(site, step)
    key = f"{AGREEMENT_PREFIX}{entry.key}/value"
    if is_primary():
        _ledger.write(entry, key, value)
        return value
    return _wait_for(entry, key, 0, timeout_seconds)


def all_agree(site: str, ok: bool, step: Step = None, timeout_seconds: int = 3600) -> bool:
    """True only when ``ok`` holds on every process."""
    if process_count() == 1:
        return ok
    return all(answer == "1" for answer in _posted_by_all(site, step, "1" if ok else "0", timeout_seconds))


def gathered(site: str, value: str, step: Step = None, timeout_seconds: int = 3600) -> list[str]:
    """Every process's ``value``, in process order, on every process."""
    if process_count() == 1:
        return [value]
    return _posted_by_all(site, step, value, timeout_seconds)


def _posted_by_all(site: str, step: Step, value: str, timeout_seconds: int) -> list[str]:
    entry = _ledger.enter(site, step)
    prefix = f"{AGREEMENT_PREFIX}{entry.key}/"
    _ledger.write(entry, f"{prefix}{process_index()}", value)
    return [_wait_for(entry, f"{prefix}{index}", index, timeout_seconds) for index in range(process_count())]


def _wait_for(entry: Entry, key: str, poster: int, timeout_seconds: int) -> str:
    """The value at ``key`` once process ``poster`` has set it; a peer on another path ends the wait at once."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            return client().blocking_key_value_get(key, POLL_MS)
        except Exception as error:  # not there yet, or the service is gone (the peer watch reports that)
            if "DEADLINE_EXCEEDED" not in str(error):
                raise
        _check_paths(entry)
        if time.monotonic() > deadline:
            raise DistributedError(f"process {poster} did not reach the agreement {entry.label} within "
                                   f"{timeout_seconds} s (process {process_index()} waited there)")


def _check_paths(entry: Entry) -> None:
    """Raise when another process entered a different key as its n-th agreement: a call missed or added."""
    posted = sorted((int(name.rsplit("/", 1)[1]), key) for name, key in
                    client().key_value_dir_get(f"{POSITION_PREFIX}{entry.count}/"))
    if any(key != entry.key for _, key in posted):
        where = ", ".join(f"process {index} at {describe(key)}" for index, key in posted)
        raise DistributedError(f"the processes took different paths: as their agreement {entry.count}, {where}; "
                               "one of them missed or added a call there")
