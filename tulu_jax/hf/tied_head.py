"""A checkpoint whose config.json ties the head to the embedding but which also stores a different
``lm_head.weight`` is refused: tying would drop that head without a word, while transformers keeps it (the
logits would differ). A stored copy equal to the embedding (some exporters write one) is fine.

Only ``SAMPLED_ROWS`` rows spread over the vocabulary are compared, so no host reads two whole tables.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tulu_jax.errors import CheckpointError

HEAD, EMBEDDING = "lm_head.weight", "model.embed_tokens.weight"
SAMPLED_ROWS = 64


def check_tied_head(tie_word_embeddings: bool, has: Callable[[str], bool], shape: Callable[[str], tuple],
                    row: Callable[[str, int], np.ndarray], where: str) -> None:
    """Raise ``CheckpointError`` when a tied checkpoint stores an ``lm_head.weight`` unlike its embedding.

    ``has(name)``, ``shape(name)`` and ``row(name, index)`` read the checkpoint (a dict or a safetensors index)."""
    if not tie_word_embeddings or not has(HEAD):
        return
    differs = shape(HEAD) != shape(EMBEDDING)
    rows = shape(EMBEDDING)[0]
    sampled = sorted(set(np.linspace(0, rows - 1, num=min(SAMPLED_ROWS, rows), dtype=int).tolist()))
    for index in ([] if differs else sampled):
        if not np.array_equal(row(HEAD, index), row(EMBEDDING, index)):
            differs = True
            break
    if differs:
        raise CheckpointError(
            f"{where}: config.json sets tie_word_embeddings: true, but the checkpoint also stores an {HEAD} that "
            f"differs from {EMBEDDING}; tying would drop that head (transformers uses it). Set "
            "tie_word_embeddings to false in config.json to keep the head, or delete lm_head.weight to tie it"
        )
