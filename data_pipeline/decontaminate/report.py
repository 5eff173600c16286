"""Results of a decontamination run: matches, per-dataset summaries, a TSV, a table, and cleaned copies."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from data_pipeline.atomic_files import atomic_output, atomic_path
from data_pipeline.decontaminate.records import is_gzip, is_parquet
from data_pipeline.errors import DataError


@dataclass(frozen=True)
class Match:
    """Eval instance (``eval_file``:``eval_line``) overlaps training instance (``train_file``:``train_line``)."""

    train_file: str
    train_line: int
    eval_file: str
    eval_line: int
    matched_fraction: float


@dataclass(frozen=True)
class DatasetSummary:
    """How much of one eval set one training file overlaps."""

    train_file: str
    eval_file: str
    eval_instances: int
    overlapped_eval_instances: int  # eval instances overlapping at least one training instance
    matching_train_instances: int  # training instances overlapping at least one of this eval set's instances
    dataset_threshold: float

    @property
    def overlapped_share(self) -> float:
        return self.overlapped_eval_instances / self.eval_instances if self.eval_instances else 0.0

    @property
    def contaminated(self) -> bool:
        """RECIPE: a dataset is contaminated when it overlaps MORE than the dataset threshold of an eval set."""
        return self.overlapped_share > self.dataset_threshold


@dataclass(frozen=True)
class Report:
    matches: list[Match]
    summaries: list[DatasetSummary]
    train_instances: dict[str, int]  # per training file

    def removed_lines(self, train_file: str) -> set[int]:
        """Lines (or Parquet rows) of ``train_file`` that overlap any eval instance."""
        return {match.train_line for match in self.matches if match.train_file == train_file}

    def contaminated_files(self) -> list[str]:
        return sorted({summary.train_file for summary in self.summaries if summary.contaminated})


def summarise(
    matches: Iterable[Match], train_file: str, eval_sizes: dict[str, int], dataset_threshold: float
) -> list[DatasetSummary]:
    """One summary per eval file for the matches of ``train_file``."""
    matches = [match for match in matches if match.train_file == train_file]
    summaries = []
    for eval_file, size in eval_sizes.items():
        of_eval = [match for match in matches if match.eval_file == eval_file]
        summaries.append(
            DatasetSummary(
                train_file=train_file,
                eval_file=eval_file,
                eval_instances=size,
                overlapped_eval_instances=len({match.eval_line for match in of_eval}),
                matching_train_instances=len({match.train_line for match in of_eval}),
                dataset_threshold=dataset_threshold,
            )
        )
    return summaries


def format_table(report: Report) -> str:
    """A plain-text table: one block per training file, one row per eval file."""
    lines = []
    for train_file, instances in report.train_instances.items():
        removed = len(report.removed_lines(train_file))
        lines.append(f"{train_file}  ({instances} instances, {removed} overlapping)")
        lines.append(f"  {'eval set':<40} {'eval n':>7} {'overlapped':>10} {'share':>8} {'train hits':>10}  status")
        for summary in (s for s in report.summaries if s.train_file == train_file):
            status = "CONTAMINATED" if summary.contaminated else "ok"
            lines.append(
                f"  {Path(summary.eval_file).name:<40} {summary.eval_instances:>7} "
                f"{summary.overlapped_eval_instances:>10} {summary.overlapped_share:>8.2%} "
                f"{summary.matching_train_instances:>10}  {status}"
            )
    return "\n".join(lines)


def write_matches_tsv(report: Report, path: str | Path) -> None:
    """One row per overlapping (training, eval) pair: files, lines and matched fraction."""
    with atomic_output(path) as handle:
        handle.write("train_file\ttrain_line\teval_file\teval_line\tmatched_fraction\n")
        for match in report.matches:
            handle.write(
                f"{match.train_file}\t{match.train_line}\t{match.eval_file}\t{match.eval_line}\t{match.matched_fraction:.4f}\n"
            )


def write_clean(train_file: str | Path, removed_lines: set[int], out_dir: str | Path) -> Path:
    """Copy ``train_file`` into ``out_dir`` under the same name without ``removed_lines``; returns the new path.

    JSONL lines are copied byte for byte (gzip stays gzip); Parquet keeps its schema. The copy appears whole.
    """
    source, target = Path(train_file), clean_path(train_file, out_dir)
    if target.resolve() == source.resolve():
        raise DataError(f"{target}: --write-clean would overwrite its input; choose another directory")
    with atomic_path(target) as temporary:
        if is_parquet(source):
            import pyarrow as arrow
            import pyarrow.parquet as parquet

            table = parquet.read_table(source)
            keep = [row not in removed_lines for row in range(1, table.num_rows + 1)]
            parquet.write_table(table.filter(arrow.array(keep, type=arrow.bool_())), temporary)
        else:
            opener = gzip.open if is_gzip(source) else open
            with opener(source, "rb") as reader, opener(temporary, "wb") as writer:
                for line_number, line in enumerate(reader, start=1):
                    if line_number not in removed_lines:
                        writer.write(line)
    return target


def clean_path(train_file: str | Path, out_dir: str | Path) -> Path:
    """Where ``write_clean`` puts the cleaned copy of ``train_file``: ``out_dir`` under the same name."""
    return Path(out_dir) / Path(train_file).name
