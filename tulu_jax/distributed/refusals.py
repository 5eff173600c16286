"""Refusals taken together: when a check refuses on any process, every process refuses with the same line.

A refusal changes what the processes do (a non-empty export target, a bad input), so it is agreed like any
other decision. ``with same_verdict("convert inputs"):`` runs its block on every process (a check that
reads shared state runs under ``if is_primary()``), then the processes compare: if the block raised a user
error on any of them, each raises the error of the lowest-numbered one, same type and message. Every process
then prints that one line and exits within a poll or two; none is stopped by a peer's notice instead.
The block must not wait on the others (no barrier or collective inside): a process that refused
early would leave them waiting.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from tulu_jax import errors
from tulu_jax.distributed.agreements import Step, gathered
from tulu_jax.distributed.coordination import process_count
from tulu_jax.distributed.watch import current_watch
from tulu_jax.errors import TuluError


@contextmanager
def same_verdict(site: str, step: Step = None) -> Iterator[None]:
    """Run the block on every process; a user error raised on any is raised on all (named ``site`` at ``step``)."""
    refusal = ""
    try:
        yield
    except TuluError as error:
        if process_count() == 1:
            raise
        refusal = f"{type(error).__name__}\n{error}"
    if process_count() == 1:
        return
    first = next((verdict for verdict in gathered(site, refusal, step) if verdict), "")
    if first:
        kind, _, message = first.partition("\n")
        error_type = getattr(errors, kind, None)
        if not (isinstance(error_type, type) and issubclass(error_type, TuluError)):
            error_type = TuluError
        watch = current_watch()
        if watch is not None:
            watch.expect_shared_line(message)
        raise error_type(message)
