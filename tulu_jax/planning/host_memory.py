"""Host RAM per TPU VM (one process) for loading the model, exporting it, and holding the data.

Figures, per process, from how the stages work (issue 17) and what ``benchmarks/host_memory.py`` measured:
- **load**: the sharded Hugging Face load reads only the slices this process's chips hold, cast to the
  parameter dtype: the process's share of the model (model bytes / hosts). Measured at 1.13-1.16× that
  share (BENCHMARKS.md, host_memory); the plan uses the 1.3× bound the issue set. The DPO reference model,
  when it is loaded separately, is the same again. RLVR loads its policy, reference and value model the same
  way, one after another.
- **export**: tensor by tensor (``hf.streamed_export``): process 0 holds one tensor in the export dtype,
  measured at 1.6× the largest (0.6× over baseline); the plan uses the 1.3× bound over one copy.
- **data**: every process holds the whole tokenized set (each tokenizes a block, the blocks are exchanged
  and every process packs the same rows): four int32 arrays per token position for SFT, twice that for
  preference pairs (chosen and rejected), padded to ``max_seq_len``. Sizes of the Tülu 3 sets from RECIPE.md
  and issue 17; other sources are reported as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from tulu_jax.models.config import LlamaConfig
from tulu_jax.planning.chips import Topology

LOAD_FACTOR = 1.3  # peak over the process's share of the model (issue 17 bound; measured 1.13-1.16)
EXPORT_FACTOR = 1.3  # peak over the largest tensor (issue 17 bound)
TOKEN_ARRAYS = 4  # input_ids, labels, segment_ids, positions (int32 each)

# name fragment of a data source -> (rows, tokens per row or None for "max_seq_len, padded"), from RECIPE.md
# (pairs, prompts) and issue 17 (the SFT mixture tokenized: about 785M tokens, packed).
KNOWN_DATASETS = {
    "tulu-3-sft-mixture": ("tokens", 785_000_000),
    "llama-3.1-tulu-3-8b-preference-mixture": ("pairs", 271_000),
    "llama-3.1-tulu-3-70b-preference-mixture": ("pairs", 334_000),
    "llama-3.1-tulu-3-405b-preference-mixture": ("pairs", 334_000),  # not in RECIPE.md: taken as the 70B set's size
    "RLVR-GSM-MATH-IF-Mixed-Constraints": ("prompts", 29_946),
    "RLVR-MATH": ("prompts", 7_500),
}


@dataclass(frozen=True)
class HostMemory:
    """Peak RAM per TPU VM for each phase, against the VM's RAM."""

    hosts: int
    host_ram_bytes: int
    load_bytes: int
    export_bytes: int
    data_bytes: Optional[int]  # None when the data set's size is not known here
    load_note: str = ""
    data_note: str = ""

    @property
    def peak_bytes(self) -> int:
        """Load and export happen apart from each other, with the data held throughout."""
        return max(self.load_bytes, self.export_bytes) + (self.data_bytes or 0)

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.host_ram_bytes


def model_bytes(config: LlamaConfig, dtype: Optional[str] = None) -> int:
    return config.num_params() * np.dtype(dtype or config.param_dtype).itemsize


def largest_tensor_bytes(config: LlamaConfig, dtype: str = "bfloat16") -> int:
    """The largest tensor an export writes: the embedding or output matrix, or one layer's MLP matrix."""
    largest = max(config.vocab_size * config.hidden_size, config.hidden_size * config.intermediate_size)
    return largest * np.dtype(dtype).itemsize


def host_memory(stage: str, stage_config, model: LlamaConfig, topology: Topology) -> HostMemory:
    hosts = topology.num_hosts
    share = model_bytes(model) / hosts
    load, note = LOAD_FACTOR * share, f"{hosts} host{'s' if hosts > 1 else ''}, model / hosts × {LOAD_FACTOR}"
    if stage == "dpo" and stage_config.objective.reference_model:
        load, note = 2 * load, note + ", the separate reference model twice that"
    if stage == "rlvr":
        note += "; policy, reference and value model loaded one after another"
    data, data_note = _data_bytes(stage, stage_config)
    return HostMemory(hosts, topology.chip.host_ram_bytes, int(load), int(EXPORT_FACTOR * largest_tensor_bytes(model)),
                      data, note, data_note)


def _data_bytes(stage: str, stage_config) -> tuple[Optional[int], str]:
    data = stage_config.data
    sources = [getattr(source, "path", None) or (source.get("path") if isinstance(source, dict) else "")
               for source in data.sources]
    for source in sources:
        for fragment, (kind, count) in KNOWN_DATASETS.items():
            if fragment in str(source):
                if kind == "tokens":
                    return count * TOKEN_ARRAYS * 4, f"{count / 1e6:.0f}M tokens × {TOKEN_ARRAYS} int32 arrays"
                if kind == "pairs":
                    length = data.max_seq_len
                    return count * 2 * length * TOKEN_ARRAYS * 4, f"{count:,} pairs × 2 × {length} positions × {TOKEN_ARRAYS} int32"
                length = data.max_prompt_len
                return count * length * 2 * 4, f"{count:,} prompts × {length} positions × 2 int32"
    return None, "data set size not known to the planner"
