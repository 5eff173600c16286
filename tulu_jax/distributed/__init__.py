"""Multi-host runtime: start ``jax.distributed`` when a run spans processes, and say who does what.

On a TPU pod slice every worker runs the same command and JAX finds its peers from the TPU metadata.
Elsewhere (CPU or GPU hosts, tests) give the coordinator explicitly, by flags or by the environment:
``TULU_COORDINATOR_ADDRESS=host:port``, ``TULU_NUM_PROCESSES``, ``TULU_PROCESS_ID`` (and optionally
``TULU_JOIN_TIMEOUT``, seconds to wait for every process to join, and ``TULU_HEARTBEAT_TIMEOUT``).
Process 0 is the primary: it alone writes logs, configs and exports; checkpoints are written by all.
Decisions are agreed by name (``agreements.py``) and refusals together (``refusals.py``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Mapping, Optional

from tulu_jax.distributed import join, watch
from tulu_jax.distributed.agreements import agreed, all_agree, barrier, gathered
from tulu_jax.distributed.coordination import is_primary, process_count, process_index
from tulu_jax.distributed.refusals import same_verdict
from tulu_jax.errors import ConfigError

log = logging.getLogger(__name__)

ENV_COORDINATOR = "TULU_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "TULU_NUM_PROCESSES"
ENV_PROCESS_ID = "TULU_PROCESS_ID"
ENV_HEARTBEAT_TIMEOUT = "TULU_HEARTBEAT_TIMEOUT"  # seconds; a dead peer is noticed this much later

_initialized = False


@dataclass(frozen=True)
class DistributedConfig:
    """Where the coordinator listens and which process this is; all None means "detect or stay single"."""

    coordinator_address: Optional[str] = None  # host:port of process 0
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    initialization_timeout: int = 300  # seconds to wait for every process to join (TULU_JOIN_TIMEOUT)
    heartbeat_timeout: int = 60  # seconds without news from a process before the others stop with an error

    @property
    def explicit(self) -> bool:
        return self.coordinator_address is not None

    def check(self) -> None:
        """Raise ConfigError unless the three explicit settings are given together and agree."""
        given = [self.coordinator_address is not None, self.num_processes is not None, self.process_id is not None]
        if any(given) and not all(given):
            raise ConfigError(
                "multi-process runs need all of coordinator address, number of processes and process id "
                f"(flags --coordinator-address/--num-processes/--process-id or {ENV_COORDINATOR}/"
                f"{ENV_NUM_PROCESSES}/{ENV_PROCESS_ID}); got address={self.coordinator_address!r}, "
                f"processes={self.num_processes!r}, id={self.process_id!r}"
            )
        if self.coordinator_address is not None and ":" not in self.coordinator_address:
            raise ConfigError(f"coordinator address {self.coordinator_address!r} must be host:port (e.g. 10.0.0.2:8476)")
        if self.num_processes is not None and self.num_processes < 1:
            raise ConfigError(f"the number of processes must be at least 1, got {self.num_processes}")
        if self.process_id is not None and self.num_processes is not None and not 0 <= self.process_id < self.num_processes:
            raise ConfigError(f"process id {self.process_id} is outside 0..{self.num_processes - 1}")


def config_from_env(environ: Optional[Mapping[str, str]] = None) -> DistributedConfig:
    """The explicit settings from ``TULU_*`` environment variables (unset ones stay None)."""
    environ = os.environ if environ is None else environ

    def integer(name: str) -> Optional[int]:
        value = environ.get(name)
        if value in (None, ""):
            return None
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"environment variable {name}={value!r} must be an integer") from None

    return DistributedConfig(
        coordinator_address=environ.get(ENV_COORDINATOR) or None,
        num_processes=integer(ENV_NUM_PROCESSES),
        process_id=integer(ENV_PROCESS_ID),
        heartbeat_timeout=integer(ENV_HEARTBEAT_TIMEOUT) or DistributedConfig.heartbeat_timeout,
        initialization_timeout=join.join_timeout_from_env(DistributedConfig.initialization_timeout, environ),
    )


def on_multihost_tpu(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True on a TPU slice of several workers (the TPU VM sets the workers' host names)."""
    environ = os.environ if environ is None else environ
    hostnames = [name for name in environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if name.strip()]
    return len(hostnames) > 1


def initialize(config: Optional[DistributedConfig] = None) -> bool:
    """Join the other processes of this run; returns True when the run is multi-process.

    Call once, before anything touches a JAX device. Explicit settings (argument, else environment) win;
    otherwise a multi-worker TPU slice is detected; otherwise the run is one process and nothing happens.
    A bad coordinator host, a busy coordinator port or processes that do not all join within the join
    timeout end this process with a one-line ``DistributedError`` (``distributed/join.py``); once joined, a
    process that stops stops the others (``distributed/watch.py``).
    """
    global _initialized
    if _initialized:
        return True
    config = config if config is not None and config.explicit else config_from_env()
    config.check()
    import jax

    if config.explicit:
        if config.num_processes == 1:
            return False
        join.check_host_resolves(config.coordinator_address)
        if config.process_id == 0:
            join.check_port_free(config.coordinator_address)
        if _platform_is_cpu():
            # CPU devices of different processes exchange data through gloo; the default has no collectives.
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.config.update("jax_enable_recoverability", True)  # a dead process is reported, not a native abort
        with join.JoinWatch(config.coordinator_address, config.process_id, config.num_processes,
                            config.initialization_timeout):
            jax.distributed.initialize(
                coordinator_address=config.coordinator_address,
                num_processes=config.num_processes,
                process_id=config.process_id,
                initialization_timeout=config.initialization_timeout + join.NATIVE_DEADLINE_MARGIN,
                heartbeat_timeout_seconds=config.heartbeat_timeout,
            )
    elif on_multihost_tpu():
        jax.config.update("jax_enable_recoverability", True)
        jax.distributed.initialize(heartbeat_timeout_seconds=config.heartbeat_timeout)
    else:
        return False
    _initialized = True
    watch.start_watch(jax.process_index(), jax.process_count())
    return True


def finish_run() -> None:
    """The orderly end of a command that succeeded on every process (a no-op alone)."""
    current = watch.current_watch()
    if current is not None:
        current.finish(lambda: barrier("command finished", step="end"))


def start_runtime() -> None:
    """What every device-using command does first: join the run, say so once, and quiet the other processes.

    Only the primary process prints progress; the others keep warnings and errors.
    """
    if initialize():
        _use_coordination_barriers_in_orbax()
    import jax

    if not is_primary():
        logging.getLogger().setLevel(logging.WARNING)
    log.info("processes: %d, devices: %d (local %d)", jax.process_count(), jax.device_count(), jax.local_device_count())


def _use_coordination_barriers_in_orbax() -> None:
    """Orbax's barriers through the coordination service: they time out (a dead peer is an error, not a
    hang) and run no device collective."""
    from absl import flags
    import orbax.checkpoint  # noqa: F401 - defines the flag

    if not flags.FLAGS.is_parsed():
        flags.FLAGS(["tulu-jax"], known_only=True)
    flags.FLAGS.experimental_orbax_use_distributed_barrier = True


def _platform_is_cpu() -> bool:
    platforms = os.environ.get("JAX_PLATFORMS", "")
    return platforms.split(",")[0].strip() == "cpu"


__all__ = [
    "DistributedConfig", "agreed", "all_agree", "barrier", "config_from_env", "finish_run", "gathered", "initialize",
    "is_primary", "on_multihost_tpu", "process_count", "process_index", "same_verdict", "start_runtime",
]
