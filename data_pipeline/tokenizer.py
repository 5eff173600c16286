"""Load a tokenizer — a Hugging Face tokenizer directory or a sentencepiece ``.model`` — behind one small interface.

``encode`` never inserts special tokens (no BOS/EOS added); special tokens written in the text, such as
``<|end_of_text|>``, are still recognised by HF tokenizers, as in ``transformers``. Nothing touches the network.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Protocol

from data_pipeline.errors import DataError
from data_pipeline.paths import as_path

log = logging.getLogger(__name__)


class Tokenizer(Protocol):
    eos_id: int
    pad_id: int
    pad_token: str
    bos_id: Optional[int]
    eos_token: str
    bos_token: Optional[str]
    vocab_size: int
    chat_template: Optional[str]
    pad_is_borrowed_eos: bool  # True when the tokenizer declares no pad token and EOS pads instead

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...
    def token_to_id(self, token: str) -> Optional[int]: ...
    def id_to_token(self, token_id: int) -> Optional[str]: ...


def load_tokenizer(path: str | Path) -> Tokenizer:
    """A HF tokenizer directory (tokenizer.json + tokenizer_config.json) or a sentencepiece ``.model`` file."""
    if not str(path):
        raise DataError("data.tokenizer is not set: give a HF tokenizer directory or a sentencepiece .model file")
    path = as_path(path)
    if path.is_file() and path.suffix == ".model":
        return SentencePieceTokenizer(path)
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return HFTokenizer(path)
    if path.is_dir() and (path / "tokenizer.model").is_file():
        return SentencePieceTokenizer(path / "tokenizer.model")
    raise DataError(
        f"tokenizer not found at {path}: expected a directory with tokenizer.json (and tokenizer_config.json) "
        "or a sentencepiece .model file"
    )


def _token_text(value: Any) -> Optional[str]:
    # tokenizer_config.json stores special tokens as plain strings or as serialized AddedToken objects.
    if isinstance(value, dict):
        return value.get("content")
    return value


def _pad_with_eos(where: str, eos_token: str, eos_id: int) -> tuple[str, int]:
    """Pad positions are always masked, so a tokenizer without a pad token pads with EOS; the log says which id."""
    log.warning(
        "tokenizer %s has no pad token: padding with the EOS token %r (id %d); pad positions are masked. "
        "Add a pad token (Tülu 3 adds '<pad>') to keep padding apart from EOS.", where, eos_token, eos_id,
    )
    return eos_token, eos_id


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` plus the special tokens and chat template of ``tokenizer_config.json``."""

    def __init__(self, directory: Path):
        from tokenizers import Tokenizer as RustTokenizer

        self.directory = directory
        self._tokenizer = RustTokenizer.from_str((directory / "tokenizer.json").read_text())  # local or gs://
        config: dict[str, Any] = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the latter wins
            if (directory / name).is_file():
                config.update(json.loads((directory / name).read_text()))
        self.eos_token = _token_text(config.get("eos_token"))
        if not self.eos_token:
            raise DataError(f"{directory}/tokenizer_config.json: no eos_token; the chat template needs one")
        self.eos_id = self._require_id(self.eos_token, "eos_token")
        self.bos_token = _token_text(config.get("bos_token"))
        self.bos_id = self._require_id(self.bos_token, "bos_token") if self.bos_token else None
        pad_token = _token_text(config.get("pad_token"))
        self.pad_is_borrowed_eos = not pad_token
        if pad_token:
            self.pad_token, self.pad_id = pad_token, self._require_id(pad_token, "pad_token")
        else:
            self.pad_token, self.pad_id = _pad_with_eos(str(directory), self.eos_token, self.eos_id)
        template = config.get("chat_template")
        if template is None and (directory / "chat_template.jinja").is_file():
            template = (directory / "chat_template.jinja").read_text()  # transformers 5 keeps it apart
        self.chat_template = template if isinstance(template, str) else None
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)

    def _require_id(self, token: str, key: str) -> int:
        token_id = self._tokenizer.token_to_id(token)
        if token_id is None:
            raise DataError(f"{self.directory}: {key} {token!r} is not in the vocabulary")
        return token_id

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_to_id(self, token: str) -> Optional[int]:
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> Optional[str]:
        return self._tokenizer.id_to_token(token_id)


class SentencePieceTokenizer:
    """A sentencepiece model with its dummy-prefix space turned off, so that encoding text piece by piece
    concatenates to the text (the chat template is tokenized piece by piece)."""

    def __init__(self, model_file: Path):
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2

        proto = sentencepiece_model_pb2.ModelProto()
        try:
            proto.ParseFromString(model_file.read_bytes())
        except Exception as error:  # protobuf's DecodeError
            raise DataError(f"{model_file}: not a sentencepiece model ({error})") from None
        proto.normalizer_spec.add_dummy_prefix = False
        self._sp = sentencepiece.SentencePieceProcessor()
        self._sp.LoadFromSerializedProto(proto.SerializeToString())
        self.vocab_size = self._sp.get_piece_size()
        if self._sp.eos_id() < 0:
            raise DataError(f"{model_file}: the model has no end-of-sequence piece")
        self.eos_id = self._sp.eos_id()
        self.eos_token = self._sp.id_to_piece(self.eos_id)
        self.bos_id = self._sp.bos_id() if self._sp.bos_id() >= 0 else None
        self.bos_token = self._sp.id_to_piece(self.bos_id) if self.bos_id is not None else None
        pad = self._sp.pad_id() if self._sp.pad_id() >= 0 else self.token_to_id("<pad>")
        self.pad_is_borrowed_eos = pad is None
        if pad is not None:
            self.pad_token, self.pad_id = self._sp.id_to_piece(pad), pad
        else:
            self.pad_token, self.pad_id = _pad_with_eos(str(model_file), self.eos_token, self.eos_id)
        self.chat_template = None

    def encode(self, text: str) -> list[int]:
        return list(self._sp.encode(text, add_bos=False, add_eos=False))

    def decode(self, ids: list[int]) -> str:
        # sentencepiece drops control pieces (BOS/EOS) when decoding; keep them visible like HF does.
        pieces, run = [], []
        for token_id in ids:
            if self._sp.is_control(token_id):
                pieces.append(self._sp.decode(run))
                pieces.append(self._sp.id_to_piece(token_id))
                run = []
            else:
                run.append(int(token_id))
        pieces.append(self._sp.decode(run))
        return "".join(pieces)

    def token_to_id(self, token: str) -> Optional[int]:
        token_id = self._sp.piece_to_id(token)
        return None if token_id == self._sp.unk_id() and token != self._sp.id_to_piece(token_id) else token_id

    def id_to_token(self, token_id: int) -> Optional[str]:
        return self._sp.id_to_piece(token_id) if 0 <= token_id < self.vocab_size else None
