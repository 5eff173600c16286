"""Wall time of one RLVR step, split into rollout (sampling + decoding + verifiers) and train (log-probs of
policy, reference and value model, advantages, PPO epochs).

    python -m benchmarks.rlvr_step [--quick] [--algorithm ppo|grpo]

A tiny Llama on the toy verifiable task (``tests/stages/rlvr_toy_task.py``) on the local devices. The first
step (compilation) is reported apart; the figures are means over the following steps.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from benchmarks.rlvr_toy_task import TOY_MODEL_OVERRIDES, ToyTokenizer, toy_prompts
from tulu_jax.config import from_dict
from tulu_jax.sharding import MeshConfig, make_mesh
from tulu_jax.stages.model_source import resolve_model_config
from tulu_jax.stages.rlvr import RLVR, RLVRConfig
from tulu_jax.stages.rlvr.stage import make_loader


def benchmark_config(quick: bool, algorithm: str) -> RLVRConfig:
    responses = 16 if quick else 64
    samples = 4 if algorithm == "grpo" else 1
    raw = {
        "model": {"source": "tiny", "overrides": {**TOY_MODEL_OVERRIDES, "hidden_size": 64, "intermediate_size": 128,
                                                  "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 128}},
        "value": {"init": "policy"},
        "data": {"max_prompt_len": 16},
        "rollout": {"prompts_per_step": responses // samples, "samples_per_prompt": samples,
                    "max_new_tokens": 8 if quick else 32, "temperature": 1.0},
        "optimizer": {"learning_rate": 1e-3, "eps": 1e-5},
        "schedule": {"kind": "constant", "warmup_ratio": 0.0},
        "ppo": {"epochs": 4, "minibatches": 1, "logprob_chunk": 16},
        "training": {"steps": 100},
        "seed": 0,
    }
    if algorithm == "grpo":
        raw["objective"] = {"advantage_estimator": "grpo", "policy_loss": "grpo", "group_size": samples,
                            "kl_beta": 0.01}
    return from_dict(RLVRConfig, raw)


def run(quick: bool = False, algorithm: str = "ppo", steps: int | None = None) -> dict:
    """Time ``steps`` RLVR steps after a compiling one; returns seconds per step for rollout and train."""
    steps = steps or (3 if quick else 10)
    config = benchmark_config(quick, algorithm)
    devices = jax.devices()
    data_parallel = max(d for d in (1, 2, 4, 8) if d <= len(devices) and config.rollout.responses_per_step % d == 0)
    mesh = make_mesh(MeshConfig(data=1, fsdp=data_parallel, tensor=1), devices[:data_parallel])
    stage = RLVR(config, resolve_model_config(config.model), ToyTokenizer(), mesh)
    loader = make_loader(config, toy_prompts(256), stage.tokenizer.pad_id)
    state = stage.initial_state()

    def timed_step(state):
        started = time.perf_counter()
        state, metrics = stage.step(state, next(loader))
        metrics = jax.device_get(metrics)  # waits for the updates
        return state, {**metrics, "train_seconds": time.perf_counter() - started - metrics["rollout_seconds"]}

    started = time.perf_counter()
    state, first = timed_step(state)
    first_seconds = time.perf_counter() - started
    timed = []
    for _ in range(steps):
        state, metrics = timed_step(state)
        timed.append(metrics)
    rollout = float(np.mean([m["rollout_seconds"] for m in timed]))
    train = float(np.mean([m["train_seconds"] for m in timed]))
    tokens = float(np.mean([m["response_length"] for m in timed])) * config.rollout.responses_per_step
    return {
        "algorithm": algorithm,
        "devices": data_parallel,
        "responses_per_step": config.rollout.responses_per_step,
        "max_new_tokens": config.rollout.max_new_tokens,
        "ppo_updates_per_step": config.updates_per_step,
        "first_step_seconds_with_compile": round(first_seconds, 3),
        "first_step_rollout_seconds": round(first["rollout_seconds"], 3),
        "first_step_train_seconds": round(first["train_seconds"], 3),
        "rollout_seconds": round(rollout, 4),
        "train_seconds": round(train, 4),
        "rollout_fraction": round(rollout / (rollout + train), 3),
        "response_tokens_per_second": round(tokens / (rollout + train), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--algorithm", choices=("ppo", "grpo"), default="ppo")
    parser.add_argument("--steps", type=int)
    args = parser.parse_args()
    print(json.dumps(run(args.quick, args.algorithm, args.steps), indent=2))


if __name__ == "__main__":
    main()
