"""From a ``DataConfig`` to token rows: read → check → mix → split eval → tokenize → pack or pad.

``prepare_data`` is what stages call; it returns numpy rows (CONTRACTS.md batch keys) ready for
``loader.BatchLoader``, and a summary that says what was taken, dropped, truncated and how full rows are.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Optional, Sequence

import numpy as np

from data_pipeline.config import DataConfig, SourceConfig
from data_pipeline.errors import DataError
from data_pipeline.examples import ExampleEncoder
from data_pipeline.mixture import format_mixture_table, mix
from data_pipeline.packing import left_pad, pack_examples, pad_examples, packing_efficiency
from data_pipeline.schema import DropCounter, infer_kind, validate_records
from data_pipeline.sources import Record, read_source
from data_pipeline.tokenizer import Tokenizer, load_tokenizer
from data_pipeline.work_share import WorkShare, decode_payload, encode_payload


@dataclass
class PreparedData:
    """Rows for training (and evaluation): SFT → packed or padded token rows; preference → ``chosen_*`` and
    ``rejected_*`` rows; RLVR → a list of ``{"prompt_ids", "ground_truth", "dataset"}`` prompts."""

    kind: str
    train: Any
    eval: Any
    tokenizer: Tokenizer
    summary: list[str] = field(default_factory=list)


def resolve_kind(config: DataConfig, sources: Sequence[SourceConfig]) -> str:
    """The configured record kind, or the kind of the first record of the first source."""
    if config.kind != "auto":
        return config.kind
    for record in read_source(sources[0]):
        return infer_kind(record.data)
    raise DataError(f"data source {sources[0].display_name} is empty")


def load_checked(source: SourceConfig, kind: str, config: DataConfig, summary: list[str],
                 known_datasets: Optional[Collection[str]] = None) -> list[Record]:
    """All valid records of one source; invalid ones raise or are counted, per ``invalid_records``."""
    dropped = DropCounter()
    records = list(validate_records(read_source(source), kind, config.invalid_records, dropped, known_datasets))
    if dropped.total:
        summary.append(dropped.report(f"{source.display_name}: invalid {kind} records skipped"))
    if not records:
        raise DataError(
            f"data source {source.display_name} has no valid {kind} records"
            + (f" ({dropped.report('all skipped')})" if dropped.total else "")
        )
    return records


def mixed_records(config: DataConfig, kind: str, summary: list[str],
                  known_datasets: Optional[Collection[str]] = None) -> tuple[list[Record], list[Record]]:
    """The training mixture and the evaluation records (from eval_sources, or held out by eval_fraction).

    ``eval_fraction`` is held out from each source before its amount is applied, so an upsampled record
    never lands in both sets.
    """
    evaluation: list[Record] = []
    positions = iter(range(len(config.sources)))  # mix() loads the sources in order

    def load_training_part(source: SourceConfig) -> list[Record]:
        records, position = load_checked(source, kind, config, summary, known_datasets), next(positions)
        if config.eval_fraction <= 0:
            return records
        order = np.random.default_rng([config.seed, position, 1_000_003]).permutation(len(records))
        held_out = int(round(config.eval_fraction * len(records)))
        evaluation.extend(records[i] for i in np.sort(order[:held_out]))
        summary.append(f"{source.display_name}: held out {held_out} records for evaluation")
        return [records[i] for i in np.sort(order[held_out:])]

    train, table = mix(config.sources, load_training_part, config.seed)
    summary.append("data mixture:\n" + format_mixture_table(table))
    if config.eval_sources:
        evaluation, _ = mix(config.eval_sources, lambda s: load_checked(s, kind, config, summary, known_datasets),
                            config.seed)
    return train, evaluation


def _encode_all(records: Sequence[Record], encode: Callable[[dict], Any], encoder: ExampleEncoder,
                share: WorkShare, name: str) -> list[tuple[int, Any]]:
    """``(record position, encoded)`` for every record that encodes, in record order.

    With several processes each encodes its own block and the blocks are exchanged (``work_share``); an
    error on any process is raised on all of them, naming the record's file and line.
    """
    divided = share.exchange is not None and share.count > 1
    before_dropped, before_truncated = Counter(encoder.dropped.counts), encoder.truncated
    kept, failure = [], None
    for position in (share.block(len(records)) if divided else range(len(records))):
        record = records[position]
        try:
            result = encode(record.data)
        except DataError as error:
            failure = f"{record.origin}: {error}"
            break
        if result is not None:
            kept.append((position, result))
    if not divided:
        if failure is not None:
            raise DataError(failure)
        return kept
    dropped = encoder.dropped.counts - before_dropped
    payload = (b"ERROR:" + failure.encode()) if failure is not None else \
        encode_payload(kept, dropped, encoder.truncated - before_truncated)
    payloads = share.exchange(name, payload)
    errors = [p[len(b"ERROR:"):].decode() for p in payloads if p.startswith(b"ERROR:")]
    if errors:
        raise DataError(errors[0])
    encoder.dropped.counts, encoder.truncated = before_dropped, before_truncated
    everything = []
    for part in payloads:
        part_kept, part_dropped, part_truncated = decode_payload(part)
        everything.extend(part_kept)
        encoder.dropped.counts.update(part_dropped)
        encoder.truncated += part_truncated
    return everything


def _sft_rows(encoder: ExampleEncoder, records: Sequence[Record], config: DataConfig, share: WorkShare,
              name: str) -> Optional[dict]:
    examples = [example for _, example in _encode_all(records, encoder.sft, encoder, share, name)]
    if not examples:
        return None
    pad_id = encoder.tokenizer.pad_id
    if config.packing == "packed":
        return pack_examples(examples, config.max_seq_len, pad_id)
    return pad_examples(examples, config.max_seq_len, pad_id)


def _preference_rows(encoder: ExampleEncoder, records: Sequence[Record], config: DataConfig, share: WorkShare,
                     name: str) -> Optional[dict]:
    pairs = [pair for _, pair in _encode_all(records, encoder.preference, encoder, share, name)]
    if not pairs:
        return None
    pad_id = encoder.tokenizer.pad_id
    chosen = pad_examples([pair[0] for pair in pairs], config.max_seq_len, pad_id)
    rejected = pad_examples([pair[1] for pair in pairs], config.max_seq_len, pad_id)
    return {**{f"chosen_{k}": v for k, v in chosen.items()}, **{f"rejected_{k}": v for k, v in rejected.items()}}


def _rlvr_prompts(encoder: ExampleEncoder, records: Sequence[Record], config: DataConfig, share: WorkShare,
                  name: str) -> Optional[list]:
    prompts = [{"prompt_ids": ids, "ground_truth": records[position].data["ground_truth"],
                "dataset": records[position].data["dataset"]}
               for position, ids in _encode_all(records, encoder.rlvr_prompt, encoder, share, name)]
    return prompts or None


def padding_note(tokenizer) -> str:
    """Which token pads the rows, and whether it is EOS (borrowed by a tokenizer without a pad token, or declared)."""
    same = ""
    if tokenizer.pad_id == tokenizer.eos_id:
        borrowed = getattr(tokenizer, "pad_is_borrowed_eos", False)
        same = " = EOS, as the tokenizer has no pad token" if borrowed else " = EOS, the tokenizer's own pad token"
    return f"padding with {tokenizer.pad_token!r} (id {tokenizer.pad_id}{same})"


BUILDERS = {"sft": _sft_rows, "preference": _preference_rows, "rlvr": _rlvr_prompts}


def prepare_data(config: DataConfig, kind: Optional[str] = None, log: Callable[[str], None] = print,
                 share: WorkShare = WorkShare(), known_datasets: Optional[Collection[str]] = None) -> PreparedData:
    """Build the training (and evaluation) rows that ``config`` describes; ``kind`` overrides ``config.kind``.

    ``share`` divides tokenization among the processes of a multi-host run (each returns the same rows)."""
    if not config.sources:
        raise DataError("data.sources is empty: list at least one dataset (path, and optionally amount)")
    kind = kind or resolve_kind(config, config.sources)
    summary: list[str] = []
    train_records, eval_records = mixed_records(config, kind, summary, known_datasets)
    tokenizer = load_tokenizer(config.tokenizer)
    encoder = ExampleEncoder(tokenizer, config)
    train = BUILDERS[kind](encoder, train_records, config, share, "train")
    if train is None:
        raise DataError(f"no training examples left after tokenization ({encoder.report()})")
    evaluation = BUILDERS[kind](encoder, eval_records, config, share, "eval") if eval_records else None
    summary.append(encoder.report())
    if share.exchange is not None and share.count > 1:
        mine = len(share.block(len(train_records))) + len(share.block(len(eval_records)))
        summary.append(f"tokenized {mine} of {len(train_records) + len(eval_records)} records on this process "
                       f"({share.index + 1} of {share.count}); the others tokenized the rest")
    summary.append(padding_note(tokenizer))
    if kind == "sft":
        summary.append(f"{len(train['input_ids'])} rows of {config.max_seq_len} tokens ({config.packing}), "
                       f"{packing_efficiency(train):.1%} real tokens")
    for line in summary:
        log(line)
    return PreparedData(kind, train, evaluation, tokenizer, summary)


def rlvr_batch_fn(pad_id: int, prompt_length: int) -> Callable[[Sequence[dict]], dict]:
    """Collate RLVR prompts: ``prompt_ids``/``prompt_mask`` left-padded to ``prompt_length``; labels stay lists."""

    def collate(prompts: Sequence[dict]) -> dict:
        ids, mask = left_pad([prompt["prompt_ids"] for prompt in prompts], pad_id, prompt_length)
        return {"prompt_ids": ids, "prompt_mask": mask,
                "ground_truth": [prompt["ground_truth"] for prompt in prompts],
                "dataset": [prompt["dataset"] for prompt in prompts]}

    return collate
