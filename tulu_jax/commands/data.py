"""``tulu-jax data preview``: show how a config's data is rendered, and which tokens are trained."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from data_pipeline.atomic_files import atomic_output
from data_pipeline.config import DataConfig
from data_pipeline.examples import IGNORE_INDEX, ExampleEncoder, TokenizedExample
from data_pipeline.pipeline import mixed_records, resolve_kind
from data_pipeline.tokenizer import load_tokenizer
from tulu_jax.config import apply_overrides, from_dict
from tulu_jax.errors import ConfigError
from tulu_jax.jsonl import refuse_overwriting_inputs

NAME = "data"
HELP = "inspect a config's data: `data preview` prints rendered examples with trained tokens marked"

TRAINED_OPEN, TRAINED_CLOSE = "[[", "]]"
ANSI_OPEN, ANSI_CLOSE = "\033[1;32m", "\033[0m"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    preview = actions.add_parser("preview", help="print the first examples with trained spans marked")
    preview.add_argument("--config", required=True, help="a YAML file with a `data:` section (a stage config works)")
    preview.add_argument("--n", type=int, default=3, help="how many examples to show (default 3)")
    preview.add_argument("--out", help="also write input_ids, labels, segment_ids, positions per example as JSONL")
    preview.add_argument("--color", action="store_true", help="mark trained tokens in colour instead of [[...]]")
    preview.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.max_seq_len=512")


def load_data_config(path: str, overrides: list[str]) -> DataConfig:
    """The ``data:`` section of a YAML config; other top-level sections (model, optimizer ...) are ignored."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{file}: not valid YAML: {error}") from None
    if not isinstance(raw, dict) or "data" not in apply_overrides(raw, overrides):
        raise ConfigError(f"{file}: no `data:` section (sources, tokenizer, max_seq_len ...)")
    return from_dict(DataConfig, apply_overrides(raw, overrides)["data"], where=f"{file}: data")


def mark_trained(tokenizer, example: TokenizedExample, color: bool) -> str:
    """Decode an example run by run, wrapping trained runs in markers."""
    opening, closing = (ANSI_OPEN, ANSI_CLOSE) if color else (TRAINED_OPEN, TRAINED_CLOSE)
    trained = (example.labels != IGNORE_INDEX).tolist()
    ids = example.input_ids.tolist()
    parts, start = [], 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or trained[end] != trained[start]:
            text = tokenizer.decode(ids[start:end])
            parts.append(f"{opening}{text}{closing}" if trained[start] else text)
            start = end
    return "".join(parts)


def example_row(example: TokenizedExample, prefix: str = "") -> dict:
    length = len(example)
    return {f"{prefix}input_ids": example.input_ids.tolist(), f"{prefix}labels": example.labels.tolist(),
            f"{prefix}segment_ids": [1] * length, f"{prefix}positions": list(range(length))}


def run(args: argparse.Namespace) -> int:
    config = load_data_config(args.config, args.overrides)
    inputs = [("data source", Path(source.path)) for source in (*config.sources, *config.eval_sources)
              if source.format != "tfds"]
    inputs += [("data.tokenizer", Path(config.tokenizer) if config.tokenizer else None), ("--config", Path(args.config))]
    refuse_overwriting_inputs(Path(args.out) if args.out else None, inputs)
    kind = resolve_kind(config, config.sources)
    summary: list[str] = []
    from tulu_jax.rewards.registry import registered_datasets

    records, _ = mixed_records(config, kind, summary, registered_datasets())
    for line in summary:
        print(line)
    tokenizer = load_tokenizer(config.tokenizer)
    encoder = ExampleEncoder(tokenizer, config)
    rows = []
    for record in records[: args.n]:
        print(f"\n=== {record.origin} ({kind}) ===")
        if kind == "sft":
            example = encoder.sft(record.data)
            if example is None:
                print("(dropped: " + encoder.dropped.report("this example") + ")")
                continue
            print(mark_trained(tokenizer, example, args.color))
            rows.append(example_row(example))
        elif kind == "preference":
            pair = encoder.preference(record.data)
            if pair is None:
                print("(dropped: " + encoder.dropped.report("this pair") + ")")
                continue
            for name, example in zip(("chosen", "rejected"), pair):
                print(f"--- {name} ---\n{mark_trained(tokenizer, example, args.color)}")
            rows.append({**example_row(pair[0], "chosen_"), **example_row(pair[1], "rejected_")})
        else:
            prompt_ids = encoder.rlvr_prompt(record.data)
            if prompt_ids is None:
                print("(dropped: prompt longer than data.max_prompt_len)")
                continue
            print(tokenizer.decode(prompt_ids.tolist()))
            print(f"--- ground_truth ({record.data['dataset']}): {record.data['ground_truth']}")
            rows.append({"prompt_ids": prompt_ids.tolist(), "ground_truth": record.data["ground_truth"],
                         "dataset": record.data["dataset"]})
    print("\n" + encoder.report())
    if args.out:
        with atomic_output(Path(args.out)) as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        print(f"wrote {len(rows)} examples to {args.out}", file=sys.stderr)
    return 0
