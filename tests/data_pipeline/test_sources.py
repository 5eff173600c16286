"""Every reader yields the same records, each with its file and line/row, from JSONL (plain, gzip), Parquet,
a HF save_to_disk directory (Dataset and DatasetDict layouts) and a locally prepared TFDS dataset."""

import gzip
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_pipeline.config import SourceConfig
from data_pipeline.errors import DataError
from data_pipeline.schema import DropCounter, validate_records
from data_pipeline.sources import read_source

from .conftest import sft_record, write_jsonl

RECORDS = [sft_record(f"question {i}", f"answer {i}") for i in range(5)]


def _messages(source):
    return [(record.data, str(record.origin)) for record in read_source(source)]


def test_jsonl_plain_and_gzip(tmp_path):
    plain = write_jsonl(tmp_path / "train.jsonl", RECORDS)
    zipped = tmp_path / "train.jsonl.gz"
    with gzip.open(zipped, "wt") as handle:
        handle.write(plain.read_text())
    for path in (plain, zipped):
        read = _messages(SourceConfig(str(path)))
        assert [data for data, _ in read] == RECORDS
        assert read[3][1] == f"{path} line 4"


def test_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(RECORDS), path, row_group_size=2)
    read = _messages(SourceConfig(str(path)))
    assert [data for data, _ in read] == RECORDS and read[4][1] == f"{path} row 5"


def _save_arrow_dataset(directory, records):
    """The layout datasets' save_to_disk writes: an Arrow stream file, state.json and dataset_info.json."""
    directory.mkdir(parents=True)
    table = pa.Table.from_pylist(records)
    name = "data-00000-of-00001.arrow"
    with pa.OSFile(str(directory / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=2)
    (directory / "state.json").write_text(json.dumps({"_data_files": [{"filename": name}], "_split": "train"}))
    (directory / "dataset_info.json").write_text(json.dumps({"features": {}}))


def test_hf_save_to_disk_dataset_and_dataset_dict(tmp_path):
    _save_arrow_dataset(tmp_path / "single", RECORDS)
    read = _messages(SourceConfig(str(tmp_path / "single")))
    assert [data for data, _ in read] == RECORDS and read[1][1].endswith("data-00000-of-00001.arrow row 2")

    _save_arrow_dataset(tmp_path / "dict" / "train", RECORDS)
    _save_arrow_dataset(tmp_path / "dict" / "test", RECORDS[:2])
    (tmp_path / "dict" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    assert [d for d, _ in _messages(SourceConfig(str(tmp_path / "dict"), split="test"))] == RECORDS[:2]
    with pytest.raises(DataError, match="no split 'validation'"):
        _messages(SourceConfig(str(tmp_path / "dict"), split="validation"))


TFDS_BUILDER = """
import json, sys
import tensorflow_datasets as tfds

class TinyChatRecords(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        message = {"role": tfds.features.Text(), "content": tfds.features.Text()}
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
            {"messages": tfds.features.Sequence(message)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i, record in enumerate(json.loads(sys.argv[2])):
            yield i, record

TinyChatRecords(data_dir=sys.argv[1], file_format="array_record").download_and_prepare()
"""


def test_tfds_local_dataset(tmp_path):
    """Prepared in another process, so reading works without the builder class (as for a user)."""
    pytest.importorskip("tensorflow_datasets")
    script = tmp_path / "build_tiny_tfds.py"
    script.write_text(TFDS_BUILDER)
    subprocess.run([sys.executable, str(script), str(tmp_path / "tfds"), json.dumps(RECORDS)], check=True,
                   capture_output=True, timeout=120)
    source = SourceConfig(f"tiny_chat_records@{tmp_path / 'tfds'}", format="tfds", split="train")
    checked = list(validate_records(read_source(source), "sft", "error", DropCounter()))
    # TFDS does not keep the generation order; compare as sets and check origins are rows.
    assert sorted(json.dumps(r.data, sort_keys=True) for r in checked) == sorted(
        json.dumps(r, sort_keys=True) for r in RECORDS)
    assert str(checked[0].origin) == "tfds:tiny_chat_records/train row 1"
    with pytest.raises(DataError, match="could not be opened"):
        list(read_source(SourceConfig(f"missing_dataset@{tmp_path / 'tfds'}", format="tfds")))
