import json

import pytest

from tests.helpers.tiny_tokenizer import build_tiny_sentencepiece, build_tiny_tokenizer


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def sentencepiece_model(tmp_path_factory):
    return build_tiny_sentencepiece(tmp_path_factory.mktemp("spm"))


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def sft_record(question="What is 2+2?", answer="4", system=None):
    messages = [{"role": "system", "content": system}] if system else []
    return {"messages": messages + [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}
