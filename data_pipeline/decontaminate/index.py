"""The evaluation side held in memory: every eval n-gram hash with the instance and word position it comes from.

``EvalIndex.candidate_pairs`` takes the n-gram hashes of a chunk of training texts and returns,
for every (training text, eval instance) pair sharing an n-gram, the fraction of the eval
instance's words covered by n-grams found in THAT training text. Hashes only pick candidates;
``overlap.py`` confirms the pairs above the threshold on the words themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from data_pipeline.decontaminate.words import hash_texts, ngram_hashes, rolling_ngram_hashes, words


@dataclass(frozen=True)
class CandidatePairs:
    """Pairs of a chunk: ``train_text`` (index in the chunk), ``eval_instance`` and hashed ``matched_fraction``."""

    train_text: np.ndarray  # int64 [pairs]
    eval_instance: np.ndarray  # int64 [pairs]
    matched_fraction: np.ndarray  # float64 [pairs]


def _ragged_arange(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each start and count, without a Python loop."""
    total = int(counts.sum())
    shifts = starts - (np.cumsum(counts) - counts)
    return np.arange(total, dtype=np.int64) + np.repeat(shifts, counts)


class EvalIndex:
    """n-gram postings of the eval prompts: sorted unique hashes, and for each its (instance, position) list."""

    def __init__(self, prompts: Sequence[str], n: int = 8, batch_size: int = 16384):
        self.n = n
        self.tokens = [words(prompt) for prompt in prompts]  # kept for the exact confirmation
        self.token_counts = np.array([len(tokens) for tokens in self.tokens], dtype=np.int64)
        hash_parts, instance_parts, position_parts = [], [], []
        for start in range(0, len(prompts), batch_size):
            hashed = hash_texts(prompts[start : start + batch_size])
            hashes, text_index, first_word = ngram_hashes(hashed, n)
            hash_parts.append(hashes)
            instance_parts.append(text_index + start)
            # Word position inside its own text = global position minus the text's first word.
            position_parts.append(first_word - hashed.text_first_word[text_index])
        hashes = np.concatenate(hash_parts) if hash_parts else np.zeros(0, dtype=np.uint64)
        order = np.argsort(hashes, kind="stable")
        sorted_hashes = hashes[order]
        self.posting_instance = np.concatenate(instance_parts)[order] if hash_parts else np.zeros(0, np.int64)
        self.posting_position = np.concatenate(position_parts)[order] if hash_parts else np.zeros(0, np.int64)
        is_first = np.ones(len(sorted_hashes), dtype=bool)
        is_first[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
        self.unique_hashes = sorted_hashes[is_first]
        # postings of unique_hashes[u] are posting_*[posting_start[u] : posting_start[u + 1]]
        self.posting_start = np.append(np.flatnonzero(is_first), len(sorted_hashes)).astype(np.int64)
        self._build_prefilter()
        self._build_buckets()

    def _build_prefilter(self) -> None:
        # A bitmap over the top hash bits (~16 bits per eval n-gram, packed 8 to a byte to stay
        # small) rejects nearly every training n-gram with one read, so the lookup only runs on
        # the few that pass.
        bits = int(np.clip(np.ceil(np.log2(max(len(self.unique_hashes), 1) * 16)), 10, 32))
        self._prefilter_shift = np.uint64(64 - bits)
        marked = np.zeros(1 << bits, dtype=bool)
        marked[self.unique_hashes >> self._prefilter_shift] = True
        self._prefilter = np.packbits(marked, bitorder="little")

    def _build_buckets(self) -> None:
        # The sorted unique hashes cut by their top bits into about one per bucket: a lookup reads
        # its bucket's bounds and compares the one or two hashes inside (a binary search over all
        # of them missed cache at every step). At most 2**26 buckets (256 MB of int32); larger
        # eval sets put more hashes in a bucket.
        bits = int(np.clip(np.ceil(np.log2(max(len(self.unique_hashes), 1))), 1, 26))
        self._bucket_shift = np.uint64(64 - bits)
        bucket_of = self.unique_hashes >> self._bucket_shift
        starts = np.searchsorted(bucket_of, np.arange((1 << bits) + 1, dtype=np.uint64))
        self._bucket_start = starts.astype(np.int32 if len(self.unique_hashes) < 2**31 else np.int64)

    def _may_contain(self, hashes: np.ndarray) -> np.ndarray:
        """False where a hash is surely not an eval n-gram (True may be a false alarm)."""
        # The top bits fit an int64, and NumPy indexes with int64 without a converting pass.
        slot = (hashes >> self._prefilter_shift).view(np.int64)
        byte = self._prefilter[slot >> 3]
        return ((byte >> (slot.astype(np.uint8) & np.uint8(7))) & np.uint8(1)).view(bool)

    def _lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(at, slot)``: the positions in ``hashes`` holding an eval n-gram, and its index in ``unique_hashes``."""
        bucket = (hashes >> self._bucket_shift).view(np.int64)
        end = self._bucket_start[bucket + 1]
        at = np.flatnonzero(self._bucket_start[bucket] < end)  # positions still compared, in increasing order
        slot = self._bucket_start[bucket[at]]
        found_at, found_slot = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        while len(at):
            stored, wanted = self.unique_hashes[slot], hashes[at]
            equal = stored == wanted
            found_at.append(at[equal])
            found_slot.append(slot[equal])
            # A bucket is sorted: past the wanted hash, or at its end, the search stops.
            going_on = (stored < wanted) & (slot + 1 < end[at])
            at, slot = at[going_on], slot[going_on] + 1
        at, slot = np.concatenate(found_at), np.concatenate(found_slot)
        order = np.argsort(at, kind="stable")
        return at[order], slot[order]

    def __len__(self) -> int:
        return len(self.tokens)

    def candidate_pairs(self, texts: Sequence[str]) -> CandidatePairs:
        """Every (training text, eval instance) pair of the chunk sharing an n-gram, with its hashed coverage."""
        if len(self.unique_hashes) == 0:
            return _coverage(*(np.zeros(0, dtype=np.int64),) * 3, self.n, self.token_counts)
        hashed = hash_texts(texts)
        # n-grams at every word position, those running across two texts included: they are
        # dropped among the few hits below rather than compacted away from all of them here.
        hashes = rolling_ngram_hashes(hashed.values, self.n)
        maybe = np.flatnonzero(self._may_contain(hashes))
        found, hit_slot = self._lookup(hashes[maybe])
        first_word = maybe[found]
        inside_one_text = hashed.ngram_fits(first_word, self.n)
        first_word, hit_slot = first_word[inside_one_text], hit_slot[inside_one_text]
        hit_text = hashed.text_of_word(first_word)
        # A training text repeating an n-gram covers the same eval words once.
        key = np.unique(hit_text * len(self.unique_hashes) + hit_slot)
        hit_text, hit_slot = key // len(self.unique_hashes), key % len(self.unique_hashes)

        counts = self.posting_start[hit_slot + 1] - self.posting_start[hit_slot]
        postings = _ragged_arange(self.posting_start[hit_slot], counts)
        train_text = np.repeat(hit_text, counts)
        eval_instance = self.posting_instance[postings]
        position = self.posting_position[postings]
        return _coverage(train_text, eval_instance, position, self.n, self.token_counts)


def _coverage(train_text, eval_instance, position, n, token_counts) -> CandidatePairs:
    """Per (train, eval) pair, the share of eval words inside the union of matched n-grams [pos, pos + n)."""
    if len(train_text) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return CandidatePairs(empty, empty, np.zeros(0))
    order = np.lexsort((position, eval_instance, train_text))
    train_text, eval_instance, position = train_text[order], eval_instance[order], position[order]
    pair_begins = np.ones(len(order), dtype=bool)
    pair_begins[1:] = (train_text[1:] != train_text[:-1]) | (eval_instance[1:] != eval_instance[:-1])
    # Sorted windows of equal length n: each adds min(n, gap to the next window of its pair) new words.
    gap_to_next = np.full(len(order), n, dtype=np.int64)
    gap_to_next[:-1] = np.minimum(n, position[1:] - position[:-1])
    gap_to_next[np.flatnonzero(pair_begins)[1:] - 1] = n  # the last window of each pair
    starts = np.flatnonzero(pair_begins)
    covered = np.add.reduceat(gap_to_next, starts)
    pair_eval = eval_instance[starts]
    return CandidatePairs(train_text[starts], pair_eval, covered / token_counts[pair_eval])
