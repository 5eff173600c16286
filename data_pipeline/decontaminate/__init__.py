"""In-memory n-gram decontamination of training prompts against evaluation prompts (RECIPE.md section 9).

Prompts (user turns) are split into lowercased words (``words.py``); every eval n-gram (n = 8)
is hashed into an in-memory index (``index.py``); training prompts stream past it in chunks,
hashed with NumPy, and only pairs sharing an n-gram are scored exactly (``overlap.py``).
An eval instance overlaps a training instance when more than half of its words lie inside
n-grams found in that same training instance; a training file overlapping more than 2% of an
eval set is contaminated (``report.py``).
"""

from data_pipeline.decontaminate.files import decontaminate_files
from data_pipeline.decontaminate.index import EvalIndex
from data_pipeline.decontaminate.overlap import PairOverlap, exact_matched_fraction, find_overlaps
from data_pipeline.decontaminate.records import AUTO, PROMPT_FIELDS, iter_prompts, prompt_text
from data_pipeline.decontaminate.report import DatasetSummary, Match, Report, format_table, write_clean, write_matches_tsv
from data_pipeline.decontaminate.words import words

__all__ = [
    "AUTO",
    "PROMPT_FIELDS",
    "DatasetSummary",
    "EvalIndex",
    "Match",
    "PairOverlap",
    "Report",
    "decontaminate_files",
    "exact_matched_fraction",
    "find_overlaps",
    "format_table",
    "iter_prompts",
    "prompt_text",
    "words",
    "write_clean",
    "write_matches_tsv",
]
