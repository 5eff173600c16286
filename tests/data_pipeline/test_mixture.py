"""Mixture amounts: fractions, upsampling (whole repeats + seeded remainder), counts; deterministic per seed."""

from collections import Counter

from data_pipeline.config import SourceConfig
from data_pipeline.mixture import format_mixture_table, mix


def _load(source):
    size = {"a": 10, "b": 7, "c": 4}[source.path]
    return [f"{source.path}{i}" for i in range(size)]


def test_amounts_and_upsampling_are_exact():
    sources = (SourceConfig("a", amount=0.5), SourceConfig("b", amount=2.5), SourceConfig("c", amount=3),
               SourceConfig("c", name="c-all"))
    records, table = mix(sources, _load, seed=7)
    counts = Counter(records)
    from_a = [r for r in counts if r.startswith("a")]
    assert len(from_a) == 5 and all(counts[r] == 1 for r in from_a)  # half of a, no repeats
    from_b = {r: n for r, n in counts.items() if r.startswith("b")}
    # 2.5 × 7 = 17.5 → 18 = 2 whole copies (14) + 4 distinct extra records
    assert sum(from_b.values()) == 18 and sorted(from_b.values()) == [2, 2, 2, 3, 3, 3, 3]
    # int 3 from c: three distinct records, plus all four from "c-all"
    assert sum(n for r, n in counts.items() if r.startswith("c")) == 3 + 4
    assert [line.taken for line in table] == [5, 18, 3, 4]
    text = format_mixture_table(table)
    assert "c-all" in text and "2.5" in text and text.splitlines()[-1].split()[-1] == "30"


def test_same_seed_same_mixture_other_seed_differs():
    sources = (SourceConfig("a", amount=0.3), SourceConfig("b", amount=1.5))
    assert mix(sources, _load, seed=1)[0] == mix(sources, _load, seed=1)[0]
    assert mix(sources, _load, seed=1)[0] != mix(sources, _load, seed=2)[0]


def test_count_above_size_upsamples():
    records, _ = mix((SourceConfig("c", amount=9),), _load, seed=0)
    counts = Counter(records)
    assert len(records) == 9 and sorted(counts.values()) == [2, 2, 2, 3]
