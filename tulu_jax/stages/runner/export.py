"""What a stage exports at the end of its run: a Hugging Face model, or (the reward model) its own layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

from etils import epath

from data_pipeline.chat_template import TULU_CHAT_TEMPLATE
from tulu_jax.models import LlamaConfig
from tulu_jax.stages.hf_export import EXPORT_DIR, export_hf


class Export(Protocol):
    """``part``: the entry of the train state's params that is exported (RLVR: ``"policy"``); None: all of them."""

    part: Optional[str]

    def write(self, output_dir: epath.Path, params: Any, run_config: dict) -> epath.Path:
        """Write ``params`` (already the exported part) under ``output_dir``; every process calls it."""


@dataclass(frozen=True)
class HuggingFaceExport:
    """``<output_dir>/hf``: weights, config, tokenizer and chat template (the tokenizer's special ids in the config)."""

    model_config: LlamaConfig
    tokenizer: Any  # bos_id / eos_id / pad_id go into config.json and generation_config.json
    tokenizer_dir: Optional[str]
    chat_template: Optional[str]
    part: Optional[str] = None

    def write(self, output_dir: epath.Path, params: Any, run_config: dict) -> epath.Path:
        tokenizer = self.tokenizer
        special_ids = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}
        return export_hf(output_dir / EXPORT_DIR, params, self.model_config, self.tokenizer_dir, self.chat_template,
                         special_ids, run_config)


def chat_model_export(config: Any, model_config: LlamaConfig, tokenizer: Any,
                      part: Optional[str] = None) -> HuggingFaceExport:
    """The export of a chat model trained on ``config.data`` (its tokenizer, and the Tülu template when chosen)."""
    chat_template = TULU_CHAT_TEMPLATE if config.data.chat_template == "tulu" else None
    return HuggingFaceExport(model_config, tokenizer, config.data.tokenizer, chat_template, part)
