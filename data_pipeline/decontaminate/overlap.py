"""Stream training prompts against an ``EvalIndex`` and return the exact (training, eval) overlaps.

An eval instance overlaps a training instance when MORE than ``threshold`` of its words lie
inside n-grams that also occur in that same training instance (RECIPE.md section 9). Eval
prompts shorter than n words have no n-gram and never overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from data_pipeline.decontaminate.index import EvalIndex
from data_pipeline.decontaminate.words import ngrams, words

DEFAULT_CHUNK_TEXTS = 8192
# A chunk also stops growing at this many characters, bounding memory for very long prompts.
DEFAULT_CHUNK_CHARACTERS = 1 << 23


@dataclass(frozen=True)
class PairOverlap:
    """One overlapping pair: training instance ``train_id`` (any label) and eval instance number ``eval_instance``."""

    train_id: object
    eval_instance: int
    matched_fraction: float


def exact_matched_fraction(eval_tokens: Sequence[str], train_tokens: Sequence[str], n: int) -> float:
    """Share of eval words inside some eval n-gram that also occurs in the training words (plain Python)."""
    if not eval_tokens:
        return 0.0
    train_ngrams = set(ngrams(train_tokens, n))
    matched = np.zeros(len(eval_tokens), dtype=bool)
    for position, gram in enumerate(ngrams(eval_tokens, n)):
        if gram in train_ngrams:
            matched[position : position + n] = True
    return float(matched.mean())


def _chunks(prompts: Iterable[tuple[object, str]], max_texts: int, max_characters: int) -> Iterator[list[tuple[object, str]]]:
    chunk, characters = [], 0
    for item in prompts:
        chunk.append(item)
        characters += len(item[1])
        if len(chunk) >= max_texts or characters >= max_characters:
            yield chunk
            chunk, characters = [], 0
    if chunk:
        yield chunk


def find_overlaps(
    train_prompts: Iterable[tuple[object, str]],
    index: EvalIndex,
    threshold: float = 0.5,
    chunk_texts: int = DEFAULT_CHUNK_TEXTS,
    chunk_characters: int = DEFAULT_CHUNK_CHARACTERS,
) -> Iterator[PairOverlap]:
    """Yield every (training, eval) pair whose matched fraction exceeds ``threshold``, in training order.

    ``train_prompts`` yields ``(train_id, prompt)``; it is read once, chunk by chunk.
    """
    for chunk in _chunks(train_prompts, chunk_texts, chunk_characters):
        pairs = index.candidate_pairs([prompt for _, prompt in chunk])
        above = np.flatnonzero(pairs.matched_fraction > threshold)
        # Hash collisions can only add matches, so the hashed fraction bounds the exact one from
        # above: confirming the pairs above the threshold on the words themselves makes the result exact.
        train_tokens_cache: dict[int, list[str]] = {}
        for pair in above:
            text = int(pairs.train_text[pair])
            eval_instance = int(pairs.eval_instance[pair])
            if text not in train_tokens_cache:
                train_tokens_cache[text] = words(chunk[text][1])
            fraction = exact_matched_fraction(index.tokens[eval_instance], train_tokens_cache[text], index.n)
            if fraction > threshold:
                yield PairOverlap(chunk[text][0], eval_instance, fraction)
