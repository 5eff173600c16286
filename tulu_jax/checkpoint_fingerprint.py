"""Per-array fingerprints of a checkpointed state, so that a restore can tell it read back the bits that were saved.

Orbax writes array chunks without a checksum (zarr3 checksums only the shard index, OCDBT only its tree nodes;
neither offers one for the data), so a flipped bit that leaves a number finite restores silently. Each saved
step therefore carries one 32-bit fingerprint per array (leaf), and a restore recomputes and compares them.

The fingerprint of an array is ``sum_i bits(x_i) * w(i) mod 2**32``: ``bits`` is the element's exact bit pattern
as an unsigned integer (32-bit dtypes bitcast to uint32; 16- and 8-bit ones bitcast to uint16/uint8 and widened;
bool as 0/1; 64-bit ones as two uint32 words), and ``w(i)`` an odd weight mixed from the element's flat index,
so any single flipped bit changes it (an odd number times ``2**k`` is never 0 mod ``2**32``) and so does moving
values between positions. Wrapping uint32 addition is exact and order-independent: the value is the same for
every sharding and every number of processes. It is one jitted program over the whole (sharded) tree, computed
where the arrays live; only one uint32 per leaf comes to the host.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from tulu_jax.errors import CheckpointError

FORMAT = "uint32 sum of bits times odd index weights, v1"
_UNSIGNED = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint32}  # 64-bit: bitcast to two uint32 words
_GOLDEN = np.uint32(0x9E3779B1)  # Knuth's multiplicative hash constant: spreads neighbouring indices apart


def fingerprints(tree: Any) -> dict:
    """``{"format": FORMAT, "leaves": {path: {"dtype": name, "value": uint32}}}`` for the arrays of ``tree``
    (JSON-ready; leaves that are not arrays, and PRNG-key, complex and sub-byte arrays, are left out)."""
    leaves = [(path, leaf) for path, leaf in leaves_by_path(tree)
              if hasattr(leaf, "dtype") and _bits_dtype(leaf.dtype) is not None]
    values = _fingerprint_values([leaf for _, leaf in leaves])
    return {"format": FORMAT, "leaves": {path: {"dtype": str(leaf.dtype), "value": int(value)}
                                         for (path, leaf), value in zip(leaves, values)}}


def mismatched_paths(tree: Any, saved: Optional[dict]) -> list[str]:
    """Paths of the leaves of ``tree`` whose fingerprint differs from the one in ``saved`` (a ``fingerprints``
    result). Only leaves present in both, with the dtype they were saved in, are compared, so a partial
    restore checks its subset; ``saved`` None or of another format (an older checkpoint) checks nothing."""
    if not saved or saved.get("format") != FORMAT:
        return []
    expected = saved.get("leaves", {})
    current = fingerprints(tree)["leaves"]
    return [path for path, entry in current.items()
            if path in expected and expected[path]["dtype"] == entry["dtype"]
            and int(expected[path]["value"]) != entry["value"]]


def check_fingerprints(tree: Any, saved: Optional[dict], where: str, limit: int = 5) -> None:
    """Raise ``CheckpointError`` naming ``where`` and the first differing leaves when ``tree`` does not hold
    the bits that were fingerprinted at save time (``saved``); nothing is checked when ``saved`` is None."""
    bad = mismatched_paths(tree, saved)
    if bad:
        shown = ", ".join(bad[:limit]) + (f" and {len(bad) - limit} more" if len(bad) > limit else "")
        raise CheckpointError(f"{where} does not hold the values that were saved (the fingerprints of {shown} "
                              "differ: flipped bits or overwritten data); it is damaged")


def leaves_by_path(tree: Any) -> list[tuple[str, Any]]:
    """``(dotted path, leaf)`` pairs; dataclass fields, dict keys and sequence indices all spelled the same way."""

    def name(entry) -> str:
        for attribute in ("key", "name", "idx"):
            if hasattr(entry, attribute):
                return str(getattr(entry, attribute))
        return str(entry)

    return [(".".join(name(entry) for entry in path), leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _bits_dtype(dtype) -> Optional[Any]:
    """The unsigned dtype holding ``dtype``'s bit pattern; None for PRNG keys, complex and sub-byte types."""
    if jnp.issubdtype(dtype, jax.dtypes.extended) or jnp.issubdtype(dtype, jnp.complexfloating):
        return None
    if dtype == np.bool_:
        return np.bool_
    width = (jnp.finfo if jnp.issubdtype(dtype, jnp.inexact) else jnp.iinfo)(dtype).bits
    return _UNSIGNED.get(width)


def _leaf_fingerprint(leaf: jax.Array) -> jax.Array:
    target = _bits_dtype(leaf.dtype)
    if target is np.bool_:
        bits = leaf.astype(jnp.uint32)
    else:
        bits = lax.bitcast_convert_type(leaf, target).astype(jnp.uint32)  # 64-bit: a trailing axis of two words
    return jnp.sum(bits * _weights(bits.shape), dtype=jnp.uint32)


def _weights(shape: tuple[int, ...]) -> jax.Array:
    """Odd uint32 weights mixed from each element's flat (row-major) index mod 2**32, built from per-axis iotas
    (no axis exceeds 2**32 even when the whole array does; the partitioner offsets each shard's iota)."""
    index = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):
        index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * np.uint32(stride % 2**32)
        stride *= shape[axis]
    mixed = index * _GOLDEN
    return (mixed ^ (mixed >> np.uint32(16))) | np.uint32(1)


def _fingerprint_values(leaves: list) -> list[int]:
    """One program per placement: normally one for the whole tree (a jitted program cannot mix arrays
    committed to different devices, so such arrays, e.g. a lone step counter, get a program of their own)."""
    groups: dict[Any, list[int]] = {}
    for index, leaf in enumerate(leaves):
        placed = isinstance(leaf, jax.Array) and leaf.committed
        groups.setdefault(frozenset(leaf.sharding.device_set) if placed else None, []).append(index)
    values = [0] * len(leaves)
    for indices in groups.values():
        for index, value in zip(indices, _to_host(_fingerprint_leaves([leaves[index] for index in indices]))):
            values[index] = int(value)
    return values


@jax.jit
def _fingerprint_leaves(leaves: list) -> jax.Array:
    return jnp.stack([_leaf_fingerprint(leaf) for leaf in leaves])


def _to_host(values: jax.Array) -> np.ndarray:
    """The few fingerprint values on the host, on every process (gathered only if left sharded)."""
    if values.is_fully_addressable or values.is_fully_replicated:
        return np.asarray(values)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(values, tiled=True))
