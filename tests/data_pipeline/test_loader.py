"""The grain loader: per-epoch seeded shuffles, disjoint per-process shares covering each epoch, the same
global batches whatever the process count, and exact resume from a saved state in a new process."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_pipeline.errors import DataError
from data_pipeline.loader import BatchLoader
from data_pipeline.pipeline import rlvr_batch_fn

ROWS = 24


def _rows(count=ROWS):
    return {"input_ids": np.arange(count, dtype=np.int32)[:, None] * np.ones((1, 4), np.int32),
            "segment_ids": np.ones((count, 4), np.int32)}


def _row_ids(batch):
    return batch["input_ids"][:, 0].tolist()


def test_each_epoch_is_a_permutation_reshuffled_per_epoch():
    loader = BatchLoader(_rows(), 4, seed=3)
    epochs = [[row for _ in range(6) for row in _row_ids(next(loader))] for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch) == list(range(ROWS))
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != list(range(ROWS))
    again = BatchLoader(_rows(), 4, seed=3)
    assert [row for _ in range(6) for row in _row_ids(next(again))] == epochs[0]


def test_two_processes_get_disjoint_shares_covering_the_epoch():
    single = BatchLoader(_rows(), 6, seed=5)
    shards = [BatchLoader(_rows(), 3, seed=5, process_index=p, process_count=2) for p in range(2)]
    for step in range(8):  # two epochs
        parts = [_row_ids(next(shard)) for shard in shards]
        assert not set(parts[0]) & set(parts[1])
        # The global batch is the same as a single process would see with the global batch size.
        assert sorted(parts[0] + parts[1]) == sorted(_row_ids(next(single)))
    epoch_rows = []
    shards = [BatchLoader(_rows(), 3, seed=5, process_index=p, process_count=2) for p in range(2)]
    for shard in shards:
        epoch_rows.extend(row for _ in range(4) for row in _row_ids(next(shard)))
    assert sorted(epoch_rows) == list(range(ROWS))


def test_partial_global_batches_are_dropped_per_epoch():
    loader = BatchLoader(_rows(10), 4, seed=0, num_epochs=2)
    batches = [_row_ids(batch) for batch in loader]
    assert loader.steps_per_epoch == 2 and len(batches) == 4
    assert len(set(batches[0] + batches[1])) == 8  # no row twice within an epoch
    with pytest.raises(DataError, match="do not fill one global batch"):
        BatchLoader(_rows(3), 2, process_count=2)


RESUME_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {root!r})
from data_pipeline.loader import BatchLoader
rows = {{"input_ids": np.arange(24, dtype=np.int32)[:, None] * np.ones((1, 4), np.int32)}}
loaders = [BatchLoader(rows, 3, seed=11, process_index=p, process_count=2) for p in range(2)]
mode, state_file = sys.argv[1], sys.argv[2]
if mode == "save":
    for _ in range(5):
        for loader in loaders:
            next(loader)
    json.dump([loader.get_state() for loader in loaders], open(state_file, "w"))
else:
    for loader, state in zip(loaders, json.load(open(state_file))):
        loader.set_state(state)
    print(json.dumps([[next(loader)["input_ids"][:, 0].tolist() for _ in range(6)] for loader in loaders]))
"""


def test_restore_in_a_new_process_continues_exactly(tmp_path):
    """Two simulated processes save after 5 batches; a fresh interpreter restores and continues."""
    root = str(Path(__file__).resolve().parents[2])
    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT.format(root=root))
    state = tmp_path / "state.json"
    subprocess.run([sys.executable, str(script), "save", str(state)], check=True, timeout=120)
    saved = json.loads(state.read_text())
    assert [entry["step"] for entry in saved] == [5, 5]
    output = subprocess.run([sys.executable, str(script), "load", str(state)], check=True, timeout=120,
                            capture_output=True, text=True).stdout
    expected = []
    for process_index in range(2):
        uninterrupted = BatchLoader({"input_ids": _rows()["input_ids"]}, 3, seed=11,
                                    process_index=process_index, process_count=2)
        expected.append([_row_ids(next(uninterrupted)) for _ in range(11)][5:])
    assert json.loads(output.strip().splitlines()[-1]) == expected


def test_state_from_other_data_is_refused():
    state = BatchLoader(_rows(), 4, seed=1).get_state()
    with pytest.raises(DataError, match="seed: saved 1, now 2"):
        BatchLoader(_rows(), 4, seed=2).set_state(state)


def test_rlvr_prompts_batch_left_padded_with_labels_as_lists():
    prompts = [{"prompt_ids": np.array([5, 6, 7], np.int32), "ground_truth": "42", "dataset": "gsm8k"},
               {"prompt_ids": np.array([8], np.int32), "ground_truth": "x", "dataset": "math"}]
    loader = BatchLoader(prompts, 2, shuffle=False, batch_fn=rlvr_batch_fn(pad_id=0, prompt_length=4))
    batch = next(loader)
    assert batch["prompt_ids"].tolist() == [[0, 5, 6, 7], [0, 0, 0, 8]]
    assert batch["prompt_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert batch["ground_truth"] == ["42", "x"] and batch["dataset"] == ["gsm8k", "math"]
