"""Command-line options shared by ``generate`` and ``eval``: sampling flags, model loading, the mesh."""

from __future__ import annotations

import jax

from data_pipeline.chat_template import CHAT_TEMPLATE_CHOICES
from tulu_jax import sharding
from tulu_jax.generation.sampling import SamplingConfig


def add_model_and_sampling_arguments(parser, *, max_new_tokens: int, temperature_help: str) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="a Hugging Face model directory with tokenizer files; a path or gs:// URL")
    parser.add_argument("--max-new-tokens", type=int, default=max_new_tokens, help=f"default {max_new_tokens}")
    parser.add_argument("--temperature", type=float, default=None, help=temperature_help)
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1: off)")
    parser.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (default 0: off)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per generation batch (default 8)")
    parser.add_argument("--add-bos", action="store_true", help="prepend the tokenizer's BOS (the Tülu template has none)")
    parser.add_argument(
        "--chat-template", choices=CHAT_TEMPLATE_CHOICES, default=None,
        help="render prompts with the tokenizer's own template or Tülu's (default: the tokenizer's when it has one)",
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype")


def sampling_from_args(args, default_temperature: float) -> SamplingConfig:
    temperature = default_temperature if args.temperature is None else args.temperature
    return SamplingConfig(temperature=temperature, top_k=args.top_k, top_p=args.top_p)


def inference_mesh_and_batch(batch_size: int):
    """A mesh over all devices (batch split over fsdp) when there are several, and the batch size rounded up
    to a multiple of the data-parallel size."""
    if jax.device_count() == 1:
        return None, batch_size
    mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=-1, tensor=1))
    parallel = sharding.data_parallel_size(mesh)
    return mesh, -(-batch_size // parallel) * parallel


def load_checked(args, mesh):
    """The ``--checkpoint`` model (``--dtype`` compute), read sharded over ``mesh``; a bad checkpoint is refused
    on every process with the same line (the read involves no collective, so a refusal cannot strand a peer)."""
    from tulu_jax import distributed
    from tulu_jax.generation.loading import load_model_for_inference

    with distributed.same_verdict("inference checkpoint"):
        return load_model_for_inference(args.checkpoint, mesh=mesh, compute_dtype=args.dtype)
