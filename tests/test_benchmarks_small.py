"""The data-pipeline benchmark counts exactly the tokens its encoder produces, and all of them land in packed rows."""

import numpy as np

from benchmarks.data_pipeline import chat_records, pipeline_pass
from data_pipeline.config import DataConfig
from data_pipeline.examples import ExampleEncoder
from data_pipeline.tokenizer import load_tokenizer
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer


def test_pipeline_pass_counts_every_encoded_token(tmp_path):
    tokenizer = load_tokenizer(build_tiny_tokenizer(tmp_path))
    records = chat_records(200, seed=3)
    assert all(len(record["messages"]) >= 2 and record["messages"][-1]["role"] == "assistant" for record in records)

    measured = pipeline_pass(records, tokenizer, length=512)

    encoder = ExampleEncoder(tokenizer, DataConfig(tokenizer="local", max_seq_len=512))
    examples = [encoder.sft(record) for record in records]
    assert measured["examples"] == len(records) == sum(example is not None for example in examples)
    assert measured["tokens"] == sum(len(example) for example in examples)
    assert measured["trained_tokens"] == sum(example.num_trained for example in examples)
    assert measured["rows"] * 512 >= measured["tokens"]
    assert np.isclose(measured["packing_efficiency"], measured["tokens"] / (measured["rows"] * 512))
    assert all(measured[key] > 0 for key in ("template_seconds", "encode_seconds", "pack_seconds"))
