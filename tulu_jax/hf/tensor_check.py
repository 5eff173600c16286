"""A checkpoint's tensors against the tensor plan of its config.json: every name there, none unknown, every
shape as the config implies. Each refusal is one line naming the tensor."""

from __future__ import annotations

from typing import Mapping

from tulu_jax.errors import CheckpointError
from tulu_jax.hf.tensor_plan import IGNORED_SUFFIXES, PlannedTensor

SHAPE_FIELDS = "vocab_size, hidden_size, num_attention_heads, num_key_value_heads, head_dim, intermediate_size"


def check_tensors(plan: list[PlannedTensor], shapes: Mapping[str, tuple[int, ...]], num_layers: int,
                  where: str) -> None:
    """Raise CheckpointError unless ``shapes`` (HF name -> shape) holds exactly the planned tensors."""
    missing = [tensor.name for tensor in plan if tensor.name not in shapes]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise CheckpointError(f"{where}: missing tensors {shown} for a {num_layers}-layer Llama")
    # A tied checkpoint may still carry a copy of the head (``tied_head`` refuses one that differs).
    planned = {tensor.name for tensor in plan}
    unknown = [name for name in shapes
               if name not in planned and name != "lm_head.weight" and not name.endswith(IGNORED_SUFFIXES)]
    if unknown:
        raise CheckpointError(f"{where}: unexpected tensors {', '.join(sorted(unknown)[:5])}: is this a Llama checkpoint?")
    for tensor in plan:
        found = tuple(shapes[tensor.name])
        if found != tensor.hf_shape:
            raise CheckpointError(
                f"{where}: tensor {tensor.name} has shape {list(found)} but config.json implies "
                f"{list(tensor.hf_shape)}; config.json ({SHAPE_FIELDS}) does not match the weights"
            )
