"""Planted overlaps come back exactly, with the right scores; the "same training instance" rule holds."""

import numpy as np
import pytest

from data_pipeline.decontaminate import EvalIndex, find_overlaps
from tests.decontamination.decontamination_reference import reference_fraction, reference_overlaps

EVAL_WORDS = 40


def random_words(rng, count, vocabulary=50_000):
    return [f"w{i}" for i in rng.integers(0, vocabulary, size=count)]


@pytest.fixture(scope="module")
def planted():
    """Eval prompts of 40 random words and training prompts with known copies of eval spans."""
    rng = np.random.default_rng(0)
    evals = [random_words(rng, EVAL_WORDS) for _ in range(12)]
    filler = lambda count=30: random_words(rng, count)  # noqa: E731
    plants = {
        # training prompt: (eval instance, expected fraction) or None when it must not be found
        "full copy": (" ".join(filler(5) + evals[0] + filler(5)), (0, 1.0)),
        "60% span": (" ".join(filler() + evals[1][10:34] + filler()), (1, 24 / 40)),
        "40% span": (" ".join(filler() + evals[2][0:16] + filler()), None),
        "exactly 50% span": (" ".join(filler() + evals[3][20:40] + filler()), None),
        # 7-word pieces of eval 4 separated by filler: no 8-gram in common at all.
        "only 7-grams": (" ".join(sum((evals[4][i : i + 7] + filler(2) for i in range(0, 35, 7)), [])), None),
        # Two separate 14-word spans in ONE training prompt: 28/40 matched by the same instance.
        "two spans": (" ".join(evals[5][0:14] + filler(10) + evals[5][26:40]), (5, 28 / 40)),
        # Upper case and punctuation do not hide a copy.
        "shouted copy": ("QUESTION: " + ", ".join(evals[6]).upper() + "?!", (6, 1.0)),
        # Each of these covers 30% of eval 7; together 60%, but no single instance covers > 50%.
        "first 30%": (" ".join(filler() + evals[7][0:12] + filler()), None),
        "second 30%": (" ".join(filler() + evals[7][14:26] + filler()), None),
        # One training prompt overlapping two eval instances.
        "two evals": (" ".join(evals[8][5:35] + filler(3) + evals[9]), [(8, 30 / 40), (9, 1.0)]),
    }
    names = list(plants)
    train_texts = [" ".join(filler(45)) for _ in range(300)]
    positions = rng.choice(len(train_texts) + len(names), size=len(names), replace=False)
    train = [None] * (len(train_texts) + len(names))
    for name, position in zip(names, positions):
        train[position] = plants[name][0]
    rest = iter(train_texts)
    train = [text if text is not None else next(rest) for text in train]
    expected = set()
    for name, position in zip(names, positions):
        wanted = plants[name][1]
        for eval_instance, fraction in [wanted] if isinstance(wanted, tuple) else (wanted or []):
            expected.add((int(position), eval_instance, fraction))
    return [" ".join(words) for words in evals], train, expected


def run(evals, train, chunk_texts=64, threshold=0.5, workers=2, chunk_characters=1 << 23):
    index = EvalIndex(evals, n=8)
    overlaps = find_overlaps(enumerate(train), index, threshold=threshold, chunk_texts=chunk_texts,
                             chunk_characters=chunk_characters, workers=workers)
    return {(o.train_id, o.eval_instance, o.matched_fraction) for o in overlaps}


@pytest.mark.parametrize("chunk_texts, workers, chunk_characters",
                         [(1, 1, 1 << 23), (7, 2, 1 << 23), (64, 1, 1 << 23), (64, 3, 500), (10_000, 2, 1 << 23)])
def test_exactly_the_planted_overlaps_come_back(planted, chunk_texts, workers, chunk_characters):
    evals, train, expected = planted
    found = run(evals, train, chunk_texts=chunk_texts, workers=workers, chunk_characters=chunk_characters)
    assert {(t, e) for t, e, _ in found} == {(t, e) for t, e, _ in expected}
    for t, e, fraction in found:
        assert fraction == pytest.approx(dict(((t2, e2), f) for t2, e2, f in expected)[(t, e)])


def test_overlaps_come_in_training_order_with_threads(planted):
    evals, train, _ = planted
    index = EvalIndex(evals, n=8)
    order = [o.train_id for o in find_overlaps(enumerate(train), index, chunk_texts=3, workers=2)]
    assert order == sorted(order) and order


def test_matches_brute_force_reference_on_the_planted_data(planted):
    evals, train, _ = planted
    assert run(evals, train) == set(reference_overlaps(evals, train))


def test_two_instances_covering_30_percent_each_do_not_overlap(planted):
    evals, _, _ = planted
    first = " ".join(evals[7].split()[0:12])
    second = " ".join(evals[7].split()[14:26])
    assert reference_fraction(evals[7], first) == pytest.approx(0.3)
    assert run(evals, [first, second]) == set()
    # The same two spans inside one training instance do overlap (24/40 = 60%).
    assert run(evals, [first + " | " + second]) == {(0, 7, 24 / 40)}


def test_hashed_coverage_equals_reference_for_every_candidate_pair():
    """Dense overlaps (tiny vocabulary): every pair's hashed fraction equals the plain-Python fraction."""
    rng = np.random.default_rng(1)
    vocabulary = [f"v{i}" for i in range(6)]
    evals = [" ".join(rng.choice(vocabulary, size=int(rng.integers(3, 30)))) for _ in range(25)]
    train = [" ".join(rng.choice(vocabulary, size=int(rng.integers(0, 60)))) for _ in range(40)]
    index = EvalIndex(evals, n=3)
    pairs = index.candidate_pairs(train)
    hashed = {(int(t), int(e)): f for t, e, f in zip(pairs.train_text, pairs.eval_instance, pairs.matched_fraction)}
    expected = {
        (t, e): reference_fraction(evals[e], train[t], n=3)
        for t in range(len(train))
        for e in range(len(evals))
        if reference_fraction(evals[e], train[t], n=3) > 0
    }
    assert len(expected) > 100  # the data really is dense
    assert hashed.keys() == expected.keys()
    for key, fraction in expected.items():
        assert hashed[key] == pytest.approx(fraction)


def test_eval_prompts_shorter_than_n_words_never_overlap():
    assert run(["one two three"], ["one two three"]) == set()
    assert run(["a b c d e f g h"], ["x a b c d e f g h y"]) == {(0, 0, 1.0)}


def test_threshold_is_strict():
    evals = [" ".join(f"e{i}" for i in range(16))]
    half = " ".join(f"e{i}" for i in range(8))
    assert run(evals, [half], threshold=0.5) == set()
    assert run(evals, [half], threshold=0.49) == {(0, 0, 0.5)}


def test_index_lookup_finds_each_eval_ngram_at_its_own_slot_and_nothing_else():
    rng = np.random.default_rng(3)
    index = EvalIndex([" ".join(random_words(rng, EVAL_WORDS)) for _ in range(2000)], n=8)
    stored = index.unique_hashes
    # Flipping the lowest bit keeps a hash in its bucket (buckets are cut by the top bits).
    queries = np.concatenate([stored, stored ^ np.uint64(1), rng.integers(0, 2**63, size=5000, dtype=np.uint64)])
    queries = queries[rng.permutation(len(queries))]
    at, slot = index._lookup(queries)
    expected_slot = np.searchsorted(stored, queries)
    expected_at = np.flatnonzero(stored[np.minimum(expected_slot, len(stored) - 1)] == queries)
    assert len(at) >= len(stored)
    np.testing.assert_array_equal(at, expected_at)
    np.testing.assert_array_equal(slot, expected_slot[expected_at])
