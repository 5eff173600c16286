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


# The real Llama 3 tokenizer (tests/helpers/llama3_tokenizer.py: Meta's tiktoken file from llama-models, under the
# Llama 3 Community License), converted once per session.
@pytest.fixture(scope="session")
def llama3_tokenizer_dir(tmp_path_factory):
    """Llama 3.1 base as released: no pad token, no chat template."""
    from tests.helpers.llama3_tokenizer import build_llama3_tokenizer

    return build_llama3_tokenizer(tmp_path_factory.mktemp("llama3"))


@pytest.fixture(scope="session")
def tulu_llama3_tokenizer_dir(tmp_path_factory):
    """Llama 3.1 plus Tülu 3's ``<pad>`` (id 128256) and the Tülu chat template."""
    from data_pipeline.chat_template import TULU_CHAT_TEMPLATE
    from tests.helpers.llama3_tokenizer import PAD, build_llama3_tokenizer

    directory = tmp_path_factory.mktemp("llama3_tulu")
    return build_llama3_tokenizer(directory, pad_token=PAD, chat_template=TULU_CHAT_TEMPLATE)
