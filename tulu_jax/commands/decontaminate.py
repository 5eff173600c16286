"""``tulu-jax decontaminate``: find training prompts that overlap evaluation prompts (8-gram, in memory)."""

from __future__ import annotations

import argparse

NAME = "decontaminate"
HELP = "find training instances whose prompts overlap evaluation prompts (word 8-grams) and optionally remove them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--train", nargs="+", required=True, metavar="FILE", help="training files (JSONL, .jsonl.gz, Parquet)")
    parser.add_argument("--eval", nargs="+", required=True, metavar="FILE", help="evaluation files (JSONL, .jsonl.gz, Parquet)")
    parser.add_argument("--n", type=int, default=8, help="n-gram length in words (default 8)")
    parser.add_argument(
        "--threshold", type=float, default=0.5,
        help="an eval instance overlaps a training instance when MORE than this share of its words is matched by it (default 0.5)",
    )
    parser.add_argument(
        "--dataset-threshold", type=float, default=0.02,
        help="a training file is contaminated when it overlaps more than this share of an eval set (default 0.02)",
    )
    parser.add_argument(
        "--train-field", default="auto",
        help="prompt field of training records: 'messages' (user turns) or a text field; 'auto' picks the first of "
        "messages, prompt, question, problem, instruction",
    )
    parser.add_argument("--eval-field", default="auto", help="prompt field of eval records (as --train-field)")
    parser.add_argument("--report", metavar="TSV", help="write every overlapping (training, eval) pair to this TSV file")
    parser.add_argument("--write-clean", metavar="DIR", help="write each training file without its overlapping instances into DIR")
    parser.add_argument("--workers", type=int, default=2,
                        help="threads hashing training chunks at once (default 2; 1 hashes inline)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from data_pipeline.decontaminate import decontaminate_files, format_table, write_matches_tsv

    refuse_writing_over_inputs(args)
    report = decontaminate_files(
        args.train,
        args.eval,
        n=args.n,
        threshold=args.threshold,
        dataset_threshold=args.dataset_threshold,
        train_field=args.train_field,
        eval_field=args.eval_field,
        clean_dir=args.write_clean,
        progress=not args.no_progress,
        workers=args.workers,
    )
    print(format_table(report))
    contaminated = report.contaminated_files()
    if contaminated:
        print(
            f"\n{len(contaminated)} training file(s) overlap more than {args.dataset_threshold:.0%} of an eval set: "
            + ", ".join(contaminated)
            + "\nRECIPE: drop such a dataset whole if the eval set is held out; otherwise remove the overlapping instances."
        )
    if args.report:
        write_matches_tsv(report, args.report)
        print(f"\n{len(report.matches)} overlapping pairs written to {args.report}")
    if args.write_clean:
        print(f"cleaned training files written to {args.write_clean}")
    return 0


def refuse_writing_over_inputs(args: argparse.Namespace) -> None:
    """Before any work: ``--report`` and each cleaned copy must be none of the input files (nor two copies
    one file)."""
    from pathlib import Path

    from data_pipeline.decontaminate.report import clean_path
    from tulu_jax.errors import DataError
    from tulu_jax.jsonl import refuse_overwriting_inputs

    inputs = [("--train file", Path(name)) for name in args.train] + [("--eval file", Path(name)) for name in args.eval]
    refuse_overwriting_inputs(Path(args.report) if args.report else None, inputs, "--report")
    if args.write_clean:
        copies: dict[Path, str] = {}
        for name in args.train:
            target = clean_path(name, args.write_clean)
            refuse_overwriting_inputs(target, inputs, "--write-clean")
            if args.report and target.resolve() == Path(args.report).resolve():
                raise DataError(f"--report {args.report} is also the cleaned copy of {name}; choose another --report")
            if target.resolve() in copies:
                raise DataError(f"--write-clean: {copies[target.resolve()]} and {name} would both be written to "
                                f"{target}; give training files distinct names")
            copies[target.resolve()] = name
