"""A stage's output_dir must not hold its own inputs where the stage writes: the export, checkpoints, logs.

``tulu-jax dpo model.source=runs/sft output_dir=runs/sft`` would resume from SFT's checkpoints as if they
were DPO's and export over the very model it started from. Inputs elsewhere under ``output_dir`` (data in
``./data`` with ``output_dir=.``) are fine: only the entries below are written.
"""

from __future__ import annotations

import os
from typing import Any, Iterator

from tulu_jax.errors import ConfigError
from tulu_jax.models import PRESETS

WRITTEN = ("hf", "checkpoints", "best", "reward_model", "reference_logps", "tensorboard", "config.yaml",
           "metrics.jsonl", "batches.jsonl")


def check_inputs_outside_outputs(config: Any) -> None:
    """Raise ``ConfigError`` naming the key when an input of ``config`` is ``output_dir`` or lies in what the
    stage writes there."""
    output_dir = _normal(config.output_dir)
    written = [f"{output_dir}/{name}" for name in WRITTEN]
    for key, path in _inputs(config):
        place = _normal(path)
        if place == output_dir or any(place == entry or place.startswith(entry + "/") for entry in written):
            raise ConfigError(
                f"{key} {path} lies in output_dir {config.output_dir}, where this stage writes its checkpoints and "
                "export; it would train from and then overwrite its own input. Choose another output_dir"
            )


def _inputs(config: Any) -> Iterator[tuple[str, str]]:
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


def _normal(path: str) -> str:
    """URLs compared as written (without a trailing slash); local paths with links resolved."""
    text = str(path)
    if "://" in text and not text.startswith("file://"):
        return text.rstrip("/")
    return os.path.realpath(text.removeprefix("file://"))
