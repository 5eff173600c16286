"""The verifier registry: each RLVR record's ``dataset`` field names the verifier that scores it.

A verifier is a plain function ``(response: str, ground_truth) -> float`` returning a score in [0, 1].
Names are matched case-insensitively, so the Tülu data's ``MATH`` and ``math`` are the same verifier.
"""

from __future__ import annotations

from typing import Any, Callable

from tulu_jax.errors import TuluError

Verifier = Callable[[str, Any], float]

_VERIFIERS: dict[str, Verifier] = {}


class UnknownDatasetError(TuluError):
    """A record names a dataset for which no verifier is registered."""


def _key(name: str) -> str:
    return str(name).strip().lower()


def register_verifier(name: str, verifier: Verifier | None = None, *, replace: bool = False):
    """Register ``verifier`` under ``name``; usable as a decorator (``@register_verifier("my_task")``).

    Registering a taken name raises ``ValueError`` unless ``replace=True``.
    """

    def add(function: Verifier) -> Verifier:
        key = _key(name)
        if not key:
            raise ValueError("a verifier needs a non-empty name")
        if key in _VERIFIERS and not replace and _VERIFIERS[key] is not function:
            raise ValueError(f"a verifier named {key!r} is already registered; pass replace=True to override it")
        _VERIFIERS[key] = function
        return function

    return add(verifier) if verifier is not None else add


def unregister_verifier(name: str) -> None:
    """Remove a registered verifier (no error if absent)."""
    _VERIFIERS.pop(_key(name), None)


def registered_datasets() -> list[str]:
    """The names with a registered verifier, sorted."""
    return sorted(_VERIFIERS)


def get_verifier(name: str) -> Verifier:
    """The verifier registered for ``name``; ``UnknownDatasetError`` listing the known names otherwise."""
    try:
        return _VERIFIERS[_key(name)]
    except KeyError:
        known = ", ".join(registered_datasets())
        raise UnknownDatasetError(
            f"no verifier is registered for dataset {name!r}; registered: {known}. "
            "Fix the record's `dataset` field or register one with tulu_jax.rewards.register_verifier."
        ) from None
