"""The embedded default's data: a small family of verifiable tasks in the Tülu 3 formats, made with a seed.

``build_demo_data(directory, seed)`` writes SFT, preference, RLVR and held-out eval JSONL files and trains
a byte-level BPE tokenizer on them, so the whole recipe runs with no network and no downloads.
"""

from data_pipeline.demo.build import DemoFiles, build_demo_data

__all__ = ["DemoFiles", "build_demo_data"]
