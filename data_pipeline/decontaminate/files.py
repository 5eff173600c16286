"""Decontaminate training files against eval files: the whole run behind ``tulu-jax decontaminate``."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from data_pipeline.decontaminate.index import EvalIndex
from data_pipeline.decontaminate.overlap import DEFAULT_WORKERS, find_overlaps
from data_pipeline.decontaminate.records import AUTO, iter_prompts
from data_pipeline.decontaminate.report import Match, Report, summarise, write_clean
from data_pipeline.errors import DataError


def decontaminate_files(
    train_files: Sequence[str | Path],
    eval_files: Sequence[str | Path],
    n: int = 8,
    threshold: float = 0.5,
    dataset_threshold: float = 0.02,
    train_field: str = AUTO,
    eval_field: str = AUTO,
    clean_dir: str | Path | None = None,
    progress: bool = True,
    workers: int = DEFAULT_WORKERS,
) -> Report:
    """Find every (training, eval) overlap, summarise per training file and optionally write cleaned copies.

    ``workers`` threads hash training chunks at once (see ``overlap.find_overlaps``).
    """
    if n < 1:
        raise DataError(f"n-gram size must be at least 1, got {n}")
    if not 0.0 <= threshold < 1.0:
        raise DataError(f"threshold must be in [0, 1) (an overlap needs MORE than it), got {threshold}")
    eval_prompts, eval_origin, eval_sizes = [], [], {}
    for eval_file in eval_files:
        before = len(eval_prompts)
        for line_number, prompt in iter_prompts(eval_file, eval_field):
            eval_prompts.append(prompt)
            eval_origin.append((str(eval_file), line_number))
        eval_sizes[str(eval_file)] = len(eval_prompts) - before
        if eval_sizes[str(eval_file)] == 0:
            raise DataError(f"{eval_file}: holds no eval instances")
    index = EvalIndex(eval_prompts, n=n)

    matches: list[Match] = []
    train_instances: dict[str, int] = {}
    summaries = []
    for train_file in train_files:
        counter = _Counter(iter_prompts(train_file, train_field))
        stream = _with_progress(counter, str(train_file)) if progress else counter
        for overlap in find_overlaps(stream, index, threshold, workers=workers):
            eval_file, eval_line = eval_origin[overlap.eval_instance]
            matches.append(Match(str(train_file), overlap.train_id, eval_file, eval_line, overlap.matched_fraction))
        train_instances[str(train_file)] = counter.count
        summaries.extend(summarise(matches, str(train_file), eval_sizes, dataset_threshold))
    report = Report(matches=matches, summaries=summaries, train_instances=train_instances)
    if clean_dir is not None:
        for train_file in train_files:
            write_clean(train_file, report.removed_lines(str(train_file)), clean_dir)
    return report


class _Counter:
    """Pass items through, counting them (the training stream is read once)."""

    def __init__(self, items):
        self.items, self.count = items, 0

    def __iter__(self):
        for item in self.items:
            self.count += 1
            yield item


def _with_progress(items, description: str):
    from tqdm import tqdm

    return tqdm(items, desc=Path(description).name, unit=" prompts", mininterval=1.0, leave=False)
