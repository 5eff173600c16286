"""Text in, text out: tokenize prompts, generate in fixed-shape batches, decode responses.

Prompts are sorted by length before batching so each batch pads to a small bucket, and every batch has
exactly ``batch_size`` rows (filler rows are dropped), so a run compiles one program per length bucket.

On a mesh (one process or several) a batch enters as global arrays, each device taking its own rows from the
prompts every process holds (nothing is compared or gathered on the way in), and only the small response
arrays (tokens ``[batch, max_new_tokens]``, lengths, stop flags) come back to every host, so every process
decodes every completion and all of them return the same list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from tulu_jax import sharding
from tulu_jax.generation.prompts import decode_response, left_pad
from tulu_jax.generation.sampler import generate
from tulu_jax.generation.sampling import SamplingConfig
from tulu_jax.models import LlamaConfig


@dataclass(frozen=True)
class Completion:
    text: str
    stopped: bool  # ended with a stop token (not cut by max_new_tokens)
    num_tokens: int  # response tokens, the stop token included


def stop_ids_for(tokenizer, config: LlamaConfig, extra: Sequence[int] = ()) -> tuple[int, ...]:
    """The tokenizer's EOS, every EOS id of the model config (all of a config.json list, as Llama 3.1
    Instruct's ``[128001, 128008, 128009]``), and any extra ids."""
    return tuple(sorted({tokenizer.eos_id, *config.eos_token_ids, *extra}))


def complete(
    params,
    config: LlamaConfig,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    *,
    sampling: SamplingConfig,
    max_new_tokens: int,
    batch_size: int,
    seed: int = 0,
    mesh: Optional[Mesh] = None,
    stop_ids: Optional[Sequence[int]] = None,
) -> list[Completion]:
    """One completion per prompt (token ids), in the prompts' order."""
    stop_ids = stop_ids_for(tokenizer, config) if stop_ids is None else tuple(stop_ids)
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    key = jax.random.PRNGKey(seed)
    results: list[Optional[Completion]] = [None] * len(prompts)
    for batch_index, start in enumerate(range(0, len(order), batch_size)):
        chosen = order[start : start + batch_size]
        ids, mask = left_pad([prompts[i] for i in chosen], tokenizer.pad_id, batch_size=batch_size)
        batch_key = jax.random.fold_in(key, batch_index)
        if mesh is not None:
            rows = sharding.batch_sharding(mesh, 2)
            ids, mask = sharding.from_every_host(ids, rows), sharding.from_every_host(mask, rows)
            batch_key = sharding.from_every_host(np.asarray(batch_key), sharding.replicated(mesh))
        out = generate(
            params, config, ids, mask, batch_key,
            sampling=sampling, max_new_tokens=max_new_tokens, stop_ids=stop_ids, pad_id=tokenizer.pad_id, mesh=mesh,
        )
        tokens, lengths, stopped = sharding.to_every_host(out.tokens, out.lengths, out.stopped)
        for row, index in enumerate(chosen):
            text = decode_response(tokenizer, tokens[row].tolist(), int(lengths[row]), bool(stopped[row]))
            results[index] = Completion(text, bool(stopped[row]), int(lengths[row]))
    return results  # type: ignore[return-value]
