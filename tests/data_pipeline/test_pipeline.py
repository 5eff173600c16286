"""From a YAML-shaped data config to loader batches and global jax arrays, for SFT and preference data."""

import numpy as np
import pytest

from data_pipeline.config import DataConfig
from data_pipeline.examples import IGNORE_INDEX
from data_pipeline.loader import BatchLoader, make_global_batch
from data_pipeline.pipeline import prepare_data
from tulu_jax.config import from_dict
from tulu_jax.errors import ConfigError

from .conftest import sft_record, write_jsonl


def test_config_amounts_keep_fraction_and_count_apart():
    config = from_dict(DataConfig, {"sources": [{"path": "a.jsonl", "amount": 2.0}, {"path": "b.jsonl", "amount": 2}]})
    assert isinstance(config.sources[0].amount, float) and isinstance(config.sources[1].amount, int)
    with pytest.raises(ConfigError, match="amount"):
        from_dict(DataConfig, {"sources": [{"path": "a.jsonl", "amount": "lots"}]})
    with pytest.raises(ConfigError, match="data.eval_fraction"):
        from_dict(DataConfig, {"eval_fraction": 1.5})
    with pytest.raises(ConfigError, match="'zipped' is not allowed"):
        from_dict(DataConfig, {"packing": "zipped"})


def test_sft_pipeline_packs_every_example_once_and_holds_out_eval(tmp_path, tokenizer_dir):
    records = [sft_record(f"question number {i}", "answer " * (i % 5 + 1)) for i in range(40)]
    path = write_jsonl(tmp_path / "train.jsonl", records)
    config = from_dict(DataConfig, {"sources": [{"path": str(path), "amount": 1.5}], "tokenizer": str(tokenizer_dir),
                                    "max_seq_len": 96, "eval_fraction": 0.1})
    lines = []
    data = prepare_data(config, log=lines.append)
    assert data.kind == "sft"
    train_examples = int(data.train["segment_ids"].max(axis=1).sum())
    eval_examples = int(data.eval["segment_ids"].max(axis=1).sum())
    # 10% of the 40 records held out first (4); the other 36 × 1.5 = 54 go to training.
    assert (train_examples, eval_examples) == (54, 4)
    assert any("real tokens" in line for line in lines) and any("data mixture" in line for line in lines)
    # Every trained label equals its input id, and every packed example ends with a trained EOS.
    rows = data.train
    assert np.all((rows["labels"] == IGNORE_INDEX) | (rows["labels"] == rows["input_ids"]))
    ends = (rows["segment_ids"] > 0) & (np.roll(rows["segment_ids"], -1, axis=1) != rows["segment_ids"])
    assert np.all(rows["labels"][ends] == data.tokenizer.eos_id) and ends.sum() == train_examples

    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    loader = BatchLoader(rows, 2, seed=config.seed)
    batch = next(loader)
    sharding = NamedSharding(Mesh(np.array(jax.devices()[:1]), ("data",)), PartitionSpec("data"))
    arrays = make_global_batch(batch, sharding)
    assert set(arrays) == {"input_ids", "labels", "segment_ids", "positions"}
    assert arrays["input_ids"].shape == (2, 96) and np.array_equal(np.asarray(arrays["labels"]), batch["labels"])


def test_preference_pipeline_rows(tmp_path, tokenizer_dir):
    prompt = [{"role": "user", "content": "Pick a number."}]
    pairs = [{"chosen": [*prompt, {"role": "assistant", "content": f"{i}"}],
              "rejected": [*prompt, {"role": "assistant", "content": "no"}]} for i in range(4)]
    path = write_jsonl(tmp_path / "prefs.jsonl", pairs)
    data = prepare_data(DataConfig(sources=(from_dict(DataConfig, {"sources": [{"path": str(path)}]}).sources[0],),
                                   tokenizer=str(tokenizer_dir), max_seq_len=32), log=lambda line: None)
    assert data.kind == "preference"
    assert sorted(data.train) == sorted(f"{side}_{key}" for side in ("chosen", "rejected")
                                        for key in ("input_ids", "labels", "segment_ids", "positions"))
    eos = data.tokenizer.eos_id
    for side, reply in (("chosen", None), ("rejected", "no")):
        labels = data.train[f"{side}_labels"]
        assert labels.shape == (4, 32) and np.all((labels == eos).sum(axis=1) == 1)
        trained = [data.tokenizer.decode(row[row != IGNORE_INDEX].tolist()) for row in labels]
        expected = [f"{reply if reply else i}<|end_of_text|>" for i in range(4)]
        assert trained == expected
