"""The reference log-prob cache on its own: keys, alignment by example index, atomic files, and the
refusal of bad preference records before any model work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tulu_jax.config import from_dict
from tulu_jax.errors import DataError
from tulu_jax.reference_cache import (
    ReferenceCache, ReferenceLogps, cache_key, compute_reference_logps, load_or_compute, rows_fingerprint,
)
from tulu_jax.stages.dpo import DPOConfig, run_dpo
from tulu_jax.stages.preference_batches import EXAMPLE_INDEX, PAIR_KEYS, with_example_index
from tulu_jax.stages.preference_training import PairBatches
from data_pipeline.loader import BatchLoader

from tests.stages.preference_fixtures import build_tokenizer, stage_dict, write_pairs


def fake_rows(count: int, length: int = 6, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {key: rng.integers(1, 50, (count, length)).astype(np.int32) for key in PAIR_KEYS}


def fake_logps(batch):
    """A stand-in reference: chosen = sum of ids, rejected = −sum, lengths = row length."""
    chosen = batch["chosen_input_ids"].sum(axis=1).astype(np.float32)
    rejected = -batch["rejected_input_ids"].sum(axis=1).astype(np.float32)
    length = np.full(len(chosen), batch["chosen_input_ids"].shape[1], np.float32)
    return {"chosen_logps": chosen, "rejected_logps": rejected, "chosen_lengths": length, "rejected_lengths": length}


def test_the_pass_covers_every_row_in_order_with_a_partial_last_batch():
    rows = fake_rows(10)
    values = compute_reference_logps(fake_logps, rows, PAIR_KEYS, batch_size=4)
    assert len(values) == 10
    np.testing.assert_array_equal(values.chosen_logps, rows["chosen_input_ids"].sum(axis=1))
    np.testing.assert_array_equal(values.rejected_logps, -rows["rejected_input_ids"].sum(axis=1))


def test_shuffled_and_resumed_batches_carry_the_reference_of_their_own_examples():
    rows = with_example_index(fake_rows(24))
    values = compute_reference_logps(fake_logps, rows, PAIR_KEYS, batch_size=8)
    loader = BatchLoader(rows, 4, seed=3, shuffle=True)
    batches = PairBatches(loader, PAIR_KEYS, values.lookup)
    next(batches)
    state = batches.get_state()
    expected = next(batches)
    resumed = PairBatches(BatchLoader(rows, 4, seed=3, shuffle=True), PAIR_KEYS, values.lookup)
    resumed.set_state(state)
    batch = next(resumed)
    np.testing.assert_array_equal(batch["chosen_input_ids"], expected["chosen_input_ids"])
    np.testing.assert_array_equal(batch["reference_chosen_logps"], batch["chosen_input_ids"].sum(axis=1))
    np.testing.assert_array_equal(batch["reference_rejected_logps"], -batch["rejected_input_ids"].sum(axis=1))
    assert EXAMPLE_INDEX not in batch  # the index stays on the host


def test_cache_is_computed_once_then_loaded(tmp_path):
    rows = fake_rows(9)
    cache = ReferenceCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return compute_reference_logps(fake_logps, rows, PAIR_KEYS, batch_size=4)

    first, hit_first = load_or_compute(cache, "k1", 9, compute)
    second, hit_second = load_or_compute(cache, "k1", 9, compute)
    assert (hit_first, hit_second, len(calls)) == (False, True, 1)
    np.testing.assert_array_equal(first.chosen_logps, second.chosen_logps)
    assert [p.name for p in tmp_path.iterdir()] == ["k1.npz"]  # no temporary file left behind
    # A cache of the wrong size (rows changed without the key noticing) is not trusted.
    assert cache.load("k1", 10) is None


def test_the_key_changes_with_every_input_it_depends_on():
    rows = fake_rows(5)
    base = dict(reference_identity={"preset": "tiny", "seed": 0}, model_config={"vocab_size": 8},
                data_config={"max_seq_len": 6}, tokenizer_fingerprint="t", max_seq_len=6,
                rows_fingerprint=rows_fingerprint(rows))
    changed_rows = {**rows, "chosen_labels": rows["chosen_labels"].copy()}
    changed_rows["chosen_labels"][0, 0] += 1
    variants = [
        {"reference_identity": {"preset": "tiny", "seed": 1}},
        {"model_config": {"vocab_size": 9}},
        {"data_config": {"max_seq_len": 7}},
        {"tokenizer_fingerprint": "u"},
        {"max_seq_len": 7},
        {"rows_fingerprint": rows_fingerprint(changed_rows)},
    ]
    keys = {cache_key(**base)} | {cache_key(**{**base, **change}) for change in variants}
    assert len(keys) == 1 + len(variants)
    assert cache_key(**base) == cache_key(**dict(base))


def test_simpo_placeholders_are_zero():
    zeros = ReferenceLogps.zeros(3).lookup(np.array([2, 0]))
    assert np.all(zeros["reference_chosen_logps"] == 0) and zeros["reference_chosen_logps"].shape == (2,)


@pytest.fixture()
def bad_pairs(tmp_path):
    path = write_pairs(tmp_path / "pairs.jsonl", 40)
    lines = path.read_text().splitlines()
    mismatch = json.loads(lines[2])
    mismatch["rejected"][0]["content"] = "a different question"
    empty = json.loads(lines[4])
    empty["chosen"][-1]["content"] = ""
    lines[2], lines[4] = json.dumps(mismatch), json.dumps(empty)
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_pair_with_differing_prompts_is_refused_naming_file_and_line(tmp_path, bad_pairs):
    raw = stage_dict(tmp_path, bad_pairs, build_tokenizer(tmp_path), dpo={"reference_cache_dir": str(tmp_path / "c")})
    with pytest.raises(DataError, match=r"pairs\.jsonl line 3: .*same prompt"):
        run_dpo(from_dict(DPOConfig, raw), export=False)


def test_bad_pairs_are_skipped_and_counted_when_the_policy_says_skip(tmp_path, bad_pairs, caplog):
    from data_pipeline.pipeline import prepare_data

    raw = stage_dict(tmp_path, bad_pairs, build_tokenizer(tmp_path), dpo={"reference_cache_dir": str(tmp_path / "c")})
    raw["data"]["invalid_records"] = "skip"
    config = from_dict(DPOConfig, raw)
    lines = []
    prepared = prepare_data(config.data, kind="preference", log=lines.append)
    assert len(prepared.train["chosen_input_ids"]) + len(prepared.eval["chosen_input_ids"]) == 38
    report = "\n".join(lines)
    assert "skipped" in report and "prompt_mismatch" in report
