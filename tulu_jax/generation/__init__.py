"""Batched KV-cache generation (prefill + one jitted while-loop of decode steps), prompts, and evaluation."""

from tulu_jax.generation.prompts import bucket_length, encode_prompt, left_pad
from tulu_jax.generation.sampler import GenerationOutput, generate, param_shardings, prompt_positions
from tulu_jax.generation.sampling import SamplingConfig, choose_tokens, restricted_logprobs, scaled_logprobs

__all__ = [
    "GenerationOutput",
    "SamplingConfig",
    "bucket_length",
    "choose_tokens",
    "encode_prompt",
    "generate",
    "left_pad",
    "param_shardings",
    "prompt_positions",
    "restricted_logprobs",
    "scaled_logprobs",
]
