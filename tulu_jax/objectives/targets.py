"""Next-token targets: the one place where labels are shifted against logits (docs/CONTRACTS.md)."""

from __future__ import annotations

import jax.numpy as jnp

IGNORE_INDEX = -100  # label value of tokens that are not trained (prompt, template markers, padding)


def next_token_targets(labels, segment_ids=None) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Return ``(targets, loss_mask)``, both ``[batch, length]``: the logits at t are scored on ``labels[t+1]``.

    A position is trained (mask 1.0) only when ``labels[t+1] != -100``, t is not the last position, and
    t and t+1 lie in the same non-padding example of a packed row (``segment_ids[t] == segment_ids[t+1] != 0``).
    Untrained positions get target 0 so that gathers stay in range; their mask is 0.0.
    ``segment_ids=None`` means one unpadded example per row.
    """
    labels = jnp.asarray(labels, dtype=jnp.int32)
    next_labels = labels[:, 1:]
    trained = next_labels != IGNORE_INDEX
    if segment_ids is not None:
        segment_ids = jnp.asarray(segment_ids, dtype=jnp.int32)
        current, following = segment_ids[:, :-1], segment_ids[:, 1:]
        # A packed row holds several examples: the last token of one must not predict the first of the next.
        trained = trained & (current == following) & (current != 0)
    # The last position has no next token.
    trained = jnp.pad(trained, ((0, 0), (0, 1)), constant_values=False)
    targets = jnp.where(trained, jnp.pad(next_labels, ((0, 0), (0, 1))), 0).astype(jnp.int32)
    return targets, trained.astype(jnp.float32)
