"""Stream training prompts against an ``EvalIndex`` and return the exact (training, eval) overlaps.

An eval instance overlaps a training instance when MORE than ``threshold`` of its words lie
inside n-grams that also occur in that same training instance (RECIPE.md section 9). Eval
prompts shorter than n words have no n-gram and never overlap.
"""

from __future__ import annotations

import collections
import itertools
import operator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from data_pipeline.decontaminate.index import CandidatePairs, EvalIndex
from data_pipeline.decontaminate.words import ngrams, words

DEFAULT_CHUNK_TEXTS = 8192
# A chunk also stops growing at this many characters, bounding memory for very long prompts.
DEFAULT_CHUNK_CHARACTERS = 1 << 23
# Chunks hashed at once on threads: the hashing is NumPy work that runs outside the GIL.
DEFAULT_WORKERS = 2


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


def _chunks(prompts: Iterable[tuple[object, str]], max_texts: int, max_characters: int) -> Iterator[tuple[list, list[str]]]:
    """``(chunk, prompts)`` of up to ``max_texts`` items, cut after the one reaching ``max_characters``."""
    iterator = iter(prompts)
    pending: list[tuple[object, str]] = []
    while chunk := pending + list(itertools.islice(iterator, max_texts - len(pending))):
        texts = list(map(operator.itemgetter(1), chunk))
        characters = np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
        cut = min(int(np.searchsorted(characters, max_characters)) + 1, len(chunk))
        yield chunk[:cut], texts[:cut]
        pending = chunk[cut:]


def find_overlaps(
    train_prompts: Iterable[tuple[object, str]],
    index: EvalIndex,
    threshold: float = 0.5,
    chunk_texts: int = DEFAULT_CHUNK_TEXTS,
    chunk_characters: int = DEFAULT_CHUNK_CHARACTERS,
    workers: int = DEFAULT_WORKERS,
) -> Iterator[PairOverlap]:
    """Yield every (training, eval) pair whose matched fraction exceeds ``threshold``, in training order.

    ``train_prompts`` yields ``(train_id, prompt)``; it is read once, chunk by chunk. With
    ``workers`` > 1, that many chunks are hashed at once on threads (NumPy releases the GIL).
    """
    chunks = _chunks(train_prompts, chunk_texts, chunk_characters)
    if workers <= 1:
        for chunk, texts in chunks:
            yield from _confirmed(chunk, texts, index.candidate_pairs(texts), index, threshold)
        return
    with ThreadPoolExecutor(workers) as pool:
        in_flight: collections.deque = collections.deque()
        for chunk, texts in chunks:
            in_flight.append((chunk, texts, pool.submit(index.candidate_pairs, texts)))
            if len(in_flight) > workers:  # keeps memory bounded and the output in training order
                chunk, texts, pairs = in_flight.popleft()
                yield from _confirmed(chunk, texts, pairs.result(), index, threshold)
        while in_flight:
            chunk, texts, pairs = in_flight.popleft()
            yield from _confirmed(chunk, texts, pairs.result(), index, threshold)


def _confirmed(chunk: list, texts: list[str], pairs: CandidatePairs, index: EvalIndex, threshold: float) -> Iterator[PairOverlap]:
    """The candidate pairs of a chunk whose exact matched fraction exceeds ``threshold``."""
    above = np.flatnonzero(pairs.matched_fraction > threshold)
    # Hash collisions can only add matches, so the hashed fraction bounds the exact one from
    # above: confirming the pairs above the threshold on the words themselves makes the result exact.
    train_tokens_cache: dict[int, list[str]] = {}
    for pair in above:
        text = int(pairs.train_text[pair])
        eval_instance = int(pairs.eval_instance[pair])
        if text not in train_tokens_cache:
            train_tokens_cache[text] = words(texts[text])
        fraction = exact_matched_fraction(index.tokens[eval_instance], train_tokens_cache[text], index.n)
        if fraction > threshold:
            yield PairOverlap(chunk[text][0], eval_instance, fraction)
