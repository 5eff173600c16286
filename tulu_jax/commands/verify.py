"""``tulu-jax verify``: score responses with the verifiable-reward functions and summarise per dataset.

Each input line is a JSON object with ``response``, ``ground_truth`` and ``dataset`` (``messages`` and
other fields are kept). Each output line is the input plus ``score`` (in [0, 1]) and ``reward`` (α·score).
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from data_pipeline.atomic_files import atomic_output
from tulu_jax.errors import DataError, TuluError
from tulu_jax.jsonl import decode_line, parse_object, refuse_overwriting_inputs

NAME = "verify"
HELP = "score responses in a JSONL file with the GSM8K / MATH / IFEval verifiers"

REQUIRED_FIELDS = ("response", "ground_truth", "dataset")


def add_arguments(parser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="JSONL with response, ground_truth, dataset")
    parser.add_argument("--out", required=True, type=Path, help="JSONL written with score and reward added")
    parser.add_argument("--alpha", type=float, default=10.0, help="reward for a verified response (default 10)")
    parser.add_argument(
        "--strip-prompt",
        action="store_true",
        help="score only the text after the last '<|assistant|>\\n' (for responses that include the prompt)",
    )


def _read_record(line: str, path: Path, number: int) -> dict:
    record = parse_object(line, f"{path}:{number}")
    missing = [field for field in REQUIRED_FIELDS if field not in record]
    if missing:
        raise DataError(f"{path}:{number}: missing field(s) {', '.join(missing)}; each line needs {', '.join(REQUIRED_FIELDS)}")
    if not isinstance(record["response"], str):
        raise DataError(f"{path}:{number}: 'response' must be a string, got {type(record['response']).__name__}")
    return record


def _dataset_label(dataset) -> str:
    names = dataset if isinstance(dataset, (list, tuple)) else [dataset]
    return "+".join(str(name).strip().lower() for name in names)


def verify_file(input_path: Path, output_path: Path, *, alpha: float = 10.0, strip_prompt: bool = False) -> dict:
    """Score every line of ``input_path`` into ``output_path``; returns ``{dataset: (count, score_sum, correct)}``."""
    from tulu_jax import rewards

    if not input_path.is_file():
        raise DataError(f"input file {input_path} does not exist")
    refuse_overwriting_inputs(output_path, [("--input file", input_path)])
    summary: dict[str, list] = defaultdict(lambda: [0, 0.0, 0])
    # The output appears only when every line scored: an error leaves no partial file behind.
    with open(input_path, "rb") as source, atomic_output(output_path) as sink:
        for number, raw in enumerate(source, start=1):
            line = decode_line(raw, f"{input_path}:{number}")
            if not line.strip():
                continue
            record = _read_record(line, input_path, number)
            response = rewards.extract_response(record["response"]) if strip_prompt else record["response"]
            try:
                value = rewards.score(response, record["ground_truth"], record["dataset"])
            except TuluError as error:
                raise DataError(f"{input_path}:{number}: {error}") from None
            except (ValueError, TypeError) as error:
                raise DataError(f"{input_path}:{number}: cannot score this record: {error}") from None
            record["score"] = value
            record["reward"] = alpha * value
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            entry = summary[_dataset_label(record["dataset"])]
            entry[0] += 1
            entry[1] += value
            entry[2] += int(value == 1.0)
    if not summary:
        raise DataError(f"{input_path}: no records found; expected JSON lines with {', '.join(REQUIRED_FIELDS)}")
    return {name: tuple(entry) for name, entry in sorted(summary.items())}


def format_summary(summary: dict) -> str:
    """A table: dataset, count, mean score, accuracy (fraction scored 1)."""
    rows = [("dataset", "count", "mean score", "accuracy")]
    for name, (count, total, correct) in summary.items():
        rows.append((name, str(count), f"{total / count:.4f}", f"{correct / count:.4f}"))
    count = sum(entry[0] for entry in summary.values())
    total = sum(entry[1] for entry in summary.values())
    correct = sum(entry[2] for entry in summary.values())
    rows.append(("all", str(count), f"{total / count:.4f}", f"{correct / count:.4f}"))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) if column == 0 else cell.rjust(width) for column, (cell, width) in enumerate(zip(row, widths)))
        for row in rows
    )


def run(args) -> int:
    summary = verify_file(args.input, args.out, alpha=args.alpha, strip_prompt=args.strip_prompt)
    print(format_summary(summary))
    print(f"wrote {args.out}")
    return 0
