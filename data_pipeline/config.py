"""The ``data:`` section of a stage config: where records come from and how they become token rows.

Plain frozen dataclasses; ``tulu_jax.config.from_dict`` builds and type-checks them from YAML, and the
``__post_init__`` checks below catch values that are well-typed but meaningless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SourceFormat = Literal["auto", "jsonl", "parquet", "hf_disk", "tfds"]
RecordKind = Literal["auto", "sft", "preference", "rlvr"]


@dataclass(frozen=True)
class SourceConfig:
    """One dataset of a mixture.

    ``amount``: None takes every record; a float is a fraction of the source (above 1.0 upsamples: whole
    repeats plus a seeded sample of the remainder); an int is an absolute number of records.
    """

    path: str
    format: SourceFormat = "auto"
    split: str = "train"  # used by hf_disk (DatasetDict directories) and tfds
    # Typed Any on purpose: a typed int|float union would turn 2.0 into the count 2 while coercing; the
    # distinction between 2.0 (upsample twice) and 2 (two records) is what YAML gives us.
    amount: Any = None
    name: str = ""  # shown in the mixture table; defaults to the path

    def __post_init__(self):
        if not self.path:
            raise ValueError("data source: 'path' must name a file or directory")
        if self.amount is not None and (isinstance(self.amount, bool) or not isinstance(self.amount, (int, float))):
            raise ValueError(
                f"data source {self.path}: amount must be a fraction (0.5, 2.0) or a record count (1000), "
                f"not {self.amount!r}"
            )
        if self.amount is not None and self.amount < 0:
            raise ValueError(
                f"data source {self.path}: amount {self.amount!r} is negative; use a fraction like 0.5, "
                "an upsampling factor like 2.0, or a record count like 1000"
            )

    @property
    def display_name(self) -> str:
        return self.name or self.path


@dataclass(frozen=True)
class DataConfig:
    """How records on disk become token rows for one stage."""

    sources: tuple[SourceConfig, ...] = ()
    kind: RecordKind = "auto"  # auto: decided from the first record's keys
    tokenizer: str = ""  # HF tokenizer directory or a sentencepiece .model file
    chat_template: Literal["tulu", "tokenizer"] = "tulu"
    add_bos: bool = False  # the Tülu 3 commands did not add BOS
    max_seq_len: int = 4096
    max_prompt_len: int = 2048  # RLVR prompts longer than this are dropped
    truncation: Literal["truncate", "drop"] = "truncate"
    packing: Literal["packed", "padded"] = "packed"
    invalid_records: Literal["error", "skip"] = "error"
    train_on: Literal["all_assistant", "last_assistant"] = "all_assistant"
    seed: int = 42
    shuffle: bool = True
    eval_fraction: float = 0.0  # held out from the mixed records before tokenization
    eval_sources: tuple[SourceConfig, ...] = ()  # a separate evaluation set (used instead of eval_fraction)

    def __post_init__(self):
        if self.max_seq_len < 2:
            raise ValueError(f"data.max_seq_len must be at least 2, got {self.max_seq_len}")
        if self.max_prompt_len < 1:
            raise ValueError(f"data.max_prompt_len must be positive, got {self.max_prompt_len}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.eval_fraction > 0 and self.eval_sources:
            raise ValueError("data: set either eval_fraction or eval_sources, not both")
        if self.seed < 0:
            raise ValueError(f"data.seed must be non-negative, got {self.seed}")
