"""The coordination service's client, and who this process is: the one place that reaches into JAX's privates.

Why it is unavoidable (JAX 0.10.2): the key-value store, its barriers and ``get_live_nodes`` of the service
``jax.distributed.initialize`` starts are reachable only through ``jax._src.distributed.global_state.client``.
JAX's public multi-host helpers (``multihost_utils.sync_global_devices``, ``broadcast_one_to_all``) run a
device collective, which is what agreements must not do (a dead peer would hang it, and on a pod it
costs an all-reduce per decision); Orbax reads the same attribute for the same reason. Should JAX make
the client public, this module is the one to change.
"""

from __future__ import annotations


def client():
    """The ``DistributedRuntimeClient`` of this process (None before ``jax.distributed.initialize``)."""
    from jax._src import distributed as jax_distributed

    return jax_distributed.global_state.client


def process_index() -> int:
    import jax

    return jax.process_index()


def process_count() -> int:
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """True on the one process that writes logs, configs and exports (process 0)."""
    return process_index() == 0
