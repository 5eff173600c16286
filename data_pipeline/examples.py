"""Checked records → token ids and labels: SFT examples, preference pairs, RLVR prompts.

Token ids are the concatenation of per-segment encodings (see ``chat_template.Segment``): each trained
span is tokenized on its own, so the label boundary falls exactly at the span edge and never inside a
BPE merge. The price is that a merge across a boundary (e.g. content ending in a character that would merge
with the following newline) is not made; the decoded ids still equal the rendered text character for character.
With Llama 3's tokenizer and the Tülu template this changes ids only for assistant content that starts with a
newline (``>\\n`` + ``\\n\\n`` instead of ``>\\n\\n\\n``): 0 of the 1,319 GSM8K test conversations and 0 of the
2,000 demo SFT examples (tests/data_pipeline/test_segment_tokenization.py). Segments also keep a prompt's ids in
training equal to its ids at generation time, where ``<|assistant|>\\n`` ends the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from data_pipeline.chat_template import JinjaChatTemplate, Segment, tulu_segments
from data_pipeline.config import DataConfig
from data_pipeline.errors import DataError
from data_pipeline.schema import DropCounter
from data_pipeline.tokenizer import Tokenizer

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: np.ndarray  # int32 [length]
    labels: np.ndarray  # int32 [length]; IGNORE_INDEX where not trained

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def num_trained(self) -> int:
        return int(np.sum(self.labels != IGNORE_INDEX))


class ExampleEncoder:
    """Turns conversations into token examples per the data config, counting truncations and drops."""

    def __init__(self, tokenizer: Tokenizer, config: DataConfig):
        self.tokenizer, self.config = tokenizer, config
        self.dropped = DropCounter()
        self.truncated = 0
        self._jinja = None
        if config.chat_template == "tokenizer":
            if not tokenizer.chat_template:
                raise DataError(
                    f"data.chat_template=tokenizer but the tokenizer at {config.tokenizer} has no chat_template; "
                    "use data.chat_template=tulu"
                )
            self._jinja = JinjaChatTemplate(tokenizer.chat_template, tokenizer.eos_token, tokenizer.bos_token)

    def segments(self, messages: Sequence[dict], add_generation_prompt: bool, train_on: str) -> list[Segment]:
        if self._jinja is not None:
            return self._jinja.segments(messages, add_generation_prompt, train_on)
        return tulu_segments(messages, self.tokenizer.eos_token, add_generation_prompt, train_on)

    def encode_segments(self, segments: Sequence[Segment]) -> TokenizedExample:
        """Concatenate per-segment token ids; labels copy the ids of trained segments, -100 elsewhere."""
        ids: list[int] = []
        labels: list[int] = []
        if self.config.add_bos:
            if self.tokenizer.bos_id is None:
                raise DataError(f"data.add_bos is true but the tokenizer at {self.config.tokenizer} has no BOS token")
            ids.append(self.tokenizer.bos_id)
            labels.append(IGNORE_INDEX)
        for segment in segments:
            piece = [self.tokenizer.eos_id] if segment.is_eos else self.tokenizer.encode(segment.text)
            ids.extend(piece)
            labels.extend(piece if segment.trained else [IGNORE_INDEX] * len(piece))
        bos = self.tokenizer.bos_id
        if bos is not None and ids[:2] == [bos, bos]:
            raise DataError(self._double_bos_message())
        return TokenizedExample(np.asarray(ids, np.int32), np.asarray(labels, np.int32))

    def _double_bos_message(self) -> str:
        # A second BOS shifts every position the model saw in pretraining; open-instruct refuses it too.
        bos = self.tokenizer.bos_token
        if self.config.add_bos:
            return (
                f"the example starts with two BOS tokens {bos!r}: the chat template already writes the BOS "
                f"(its '{{{{ bos_token }}}}') and data.add_bos=true adds another; set data.add_bos=false"
            )
        return (
            f"the example starts with two BOS tokens {bos!r}: the chat template or the first message writes it "
            "twice; fix the template (data.chat_template) or the data"
        )

    def _fit(self, example: TokenizedExample, limit: int) -> Optional[TokenizedExample]:
        """Apply the truncation policy; None (counted) when the example must be dropped."""
        if len(example) > limit:
            if self.config.truncation == "drop":
                self.dropped.add("longer_than_max_seq_len")
                return None
            self.truncated += 1
            example = TokenizedExample(example.input_ids[:limit], example.labels[:limit])
        if example.num_trained == 0:
            self.dropped.add("no_trained_token")
            return None
        return example

    def sft(self, record: dict) -> Optional[TokenizedExample]:
        """An SFT example: assistant content and its EOS trained (all turns or the last, per ``train_on``)."""
        segments = self.segments(record["messages"], False, self.config.train_on)
        return self._fit(self.encode_segments(segments), self.config.max_seq_len)

    def preference(self, record: dict) -> Optional[tuple[TokenizedExample, TokenizedExample]]:
        """Chosen and rejected examples; only the final assistant turn of each is trained. None drops the pair."""
        limit = self.config.max_seq_len
        chosen = self._fit(self.encode_segments(self.segments(record["chosen"], False, "last_assistant")), limit)
        if chosen is None:
            return None
        rejected = self._fit(self.encode_segments(self.segments(record["rejected"], False, "last_assistant")), limit)
        return None if rejected is None else (chosen, rejected)

    def rlvr_prompt(self, record: dict) -> Optional[np.ndarray]:
        """Prompt ids ending with the generation prompt ``<|assistant|>\\n``; too-long prompts are dropped."""
        segments = self.segments(record["messages"], True, "last_assistant")
        ids = self.encode_segments(segments).input_ids
        if len(ids) > self.config.max_prompt_len:
            self.dropped.add("prompt_longer_than_max_prompt_len")
            return None
        return ids

    def report(self) -> str:
        truncated = f"; {self.truncated} truncated to {self.config.max_seq_len} tokens" if self.truncated else ""
        return self.dropped.report("tokenized examples") + truncated
