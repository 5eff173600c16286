"""The real Llama 3 tokenizer for tests: Meta's tiktoken file from the ``llama-models`` package (test extra),
converted to a Hugging Face tokenizer once per process and written as tokenizer directories.

License: ``llama_models/llama3/tokenizer.model`` is distributed by Meta under the Llama 3 Community License
Agreement (see the ``llama-models`` package and https://github.com/meta-llama/llama-models). It is read from
the installed package at test time and never copied into this repository.

The conversion is ``transformers``' own ``TikTokenConverter`` (no network); the special tokens and their ids
are the ones ``llama_models.llama3.tokenizer.Tokenizer`` declares, so ids match Meta's tokenizer and the Hugging
Face ``meta-llama/Llama-3.1-8B`` tokenizer (128,000 BPE tokens + 256 special = 128,256).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
EOT = "<|eot_id|>"
PAD = "<pad>"  # the token Tülu 3 adds (id 128256)
LLAMA3_VOCAB_SIZE = 128256

# Meta-Llama-3-8B-Instruct's chat template: it writes {{ bos_token }} itself, so add_bos would double it.
LLAMA3_INSTRUCT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def tiktoken_file() -> Path:
    """The path of Meta's Llama 3 tiktoken file inside the installed ``llama-models`` package."""
    try:
        import llama_models
    except ImportError as error:
        raise RuntimeError("the real-tokenizer tests need llama-models: pip install -e '.[test]'") from error
    return Path(llama_models.__file__).parent / "llama3" / "tokenizer.model"


def special_tokens() -> list[str]:
    """Llama 3's 256 special tokens in id order (ids 128000..128255), as ``llama_models`` declares them."""
    from llama_models.llama3.tokenizer import Tokenizer

    return [token for token, _ in sorted(Tokenizer.get_instance().special_tokens.items(), key=lambda item: item[1])]


@functools.cache
def _converted_json() -> str:
    """tokenizer.json text of the converted tokenizer (the ~2 s conversion, done once per process)."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    converter = TikTokenConverter(vocab_file=str(tiktoken_file()), extra_special_tokens=special_tokens())
    return converter.converted().to_str()


def build_llama3_tokenizer(
    directory: str | Path, *, pad_token: Optional[str] = None, chat_template: Optional[str] = None
) -> Path:
    """Write the Llama 3.1 base tokenizer (BOS ``<|begin_of_text|>``, EOS ``<|end_of_text|>``) into ``directory``.

    ``pad_token`` not yet in the vocabulary is added after the 256 special tokens (``<pad>`` → id 128256,
    as Tülu 3 does); ``chat_template`` is stored the way ``transformers`` saves it.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_converted_json()), bos_token=BOS, eos_token=EOS,
        chat_template=chat_template,
    )
    if pad_token is not None:
        tokenizer.add_special_tokens({"pad_token": pad_token})
    tokenizer.save_pretrained(str(directory))
    return directory
