"""A stage's Hugging Face export: a directory ``transformers`` loads and chats with, streamed tensor by tensor."""

from __future__ import annotations

import json
from typing import Any, Optional

import jax
from etils import epath

from data_pipeline.paths import as_path
from tulu_jax.hf import write_hf_side_files
from tulu_jax.hf.streamed_export import export_params_streamed
from tulu_jax.models import LlamaConfig

EXPORT_DIR = "hf"


def export_hf(
    directory: str | epath.Path,
    params: Any,
    config: LlamaConfig,
    tokenizer_dir: Optional[str],
    chat_template: Optional[str],
    special_ids: dict[str, Optional[int]],
    run_config: Optional[dict] = None,
    dtype: Optional[str] = None,
) -> epath.Path:
    """Write a directory that ``transformers`` loads and chats with: weights, config, tokenizer, chat template.

    Every process calls it; tensors stream out one at a time (``hf.streamed_export``) and the directory
    appears whole. ``special_ids`` (bos/eos/pad token ids of the tokenizer) go into config.json and
    generation_config.json so that generation stops where training taught the model to stop.
    """
    config = config.replace(**{f"{name}_token_id": value for name, value in special_ids.items()})
    tokenizer_path = as_path(tokenizer_dir) if tokenizer_dir and as_path(tokenizer_dir).is_dir() else None

    def write_files(folder: epath.Path) -> None:
        written_dtype = dtype or str(jax.tree.leaves(params)[0].dtype)
        write_hf_side_files(folder, config, written_dtype, tokenizer_path)
        if chat_template is not None:
            _write_chat_template(folder, chat_template)
        if run_config is not None:
            (folder / "tulu_jax_config.json").write_text(json.dumps(run_config, indent=2) + "\n")

    return export_params_streamed(str(directory), params, config, dtype=dtype, write_files=write_files)


def _write_chat_template(directory: epath.Path, chat_template: str) -> None:
    """Put the template in tokenizer_config.json (and chat_template.jinja, which transformers 5 prefers)."""
    config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text()) if config_path.exists() else {}
    tokenizer_config["chat_template"] = chat_template
    config_path.write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    if (directory / "chat_template.jinja").exists():
        (directory / "chat_template.jinja").write_text(chat_template)
