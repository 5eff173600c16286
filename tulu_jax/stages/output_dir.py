"""A stage's output_dir must not hold its own inputs where the stage writes: the export, checkpoints, logs.

``tulu-jax dpo model.source=runs/sft output_dir=runs/sft`` would resume from SFT's checkpoints as if they
were DPO's and export over the very model it started from. Inputs elsewhere under ``output_dir`` (data in
``./data`` with ``output_dir=.``) are fine: only the entries below are written.
"""

from __future__ import annotations

from typing import Any, Iterator

from data_pipeline.paths import as_path, same_location, same_or_within
from tulu_jax.errors import ConfigError
from tulu_jax.models import PRESETS

WRITTEN = ("hf", "checkpoints", "best", "reward_model", "reference_logps", "tensorboard", "config.yaml",
           "metrics.jsonl", "batches.jsonl")


def check_inputs_outside_outputs(config: Any) -> None:
    """Raise ``ConfigError`` naming the key when an input of ``config`` is ``output_dir`` or lies in what the
    stage writes there."""
    output_dir = as_path(config.output_dir)
    for key, path in stage_inputs(config):
        if same_location(path, output_dir) or any(same_or_within(path, output_dir / name) for name in WRITTEN):
            raise ConfigError(
                f"{key} {path} lies in output_dir {config.output_dir}, where this stage writes its checkpoints and "
                "export; it would train from and then overwrite its own input. Choose another output_dir"
            )


def stage_inputs(config: Any) -> Iterator[tuple[str, str]]:
    """(config key, location) of every input a stage reads: model, value model, tokenizer, data."""
    model = getattr(config, "model", None)
    if model is not None and model.source and model.source not in PRESETS:
        yield "model.source", model.source
    value = getattr(config, "value", None)
    if value is not None and getattr(value, "path", ""):
        yield "value.path", value.path
    data = getattr(config, "data", None)
    if data is not None:
        if data.tokenizer:
            yield "data.tokenizer", data.tokenizer
        for key in ("sources", "eval_sources"):
            for index, source in enumerate(getattr(data, key, ())):
                yield f"data.{key}[{index}].path", source.path

