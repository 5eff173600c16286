"""Inputs for launching ``tulu-jax rlvr`` in tests: a tiny Hugging Face policy, a tokenizer and prompt files."""

from __future__ import annotations

import json
from pathlib import Path

import jax

from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tulu_jax.hf import save_hf_checkpoint
from tulu_jax.models import init_params, preset

LOWERCASE = json.dumps({"func_name": "validate_lowercase"})


def write_prompts(path: Path, count: int) -> Path:
    """Half IFEval "answer in lowercase" (a random tiny policy passes now and then: a reward to learn from),
    half GSM8K sums (it never passes: the per-dataset metrics see both)."""
    with path.open("w") as sink:
        for index in range(count):
            if index % 2:
                record = {"messages": [{"role": "user", "content": f"What is {index % 7} plus 1?"}],
                          "ground_truth": str(index % 7 + 1), "dataset": "gsm8k"}
            else:
                record = {"messages": [{"role": "user", "content": f"Greet {index % 7}, lowercase."}],
                          "ground_truth": LOWERCASE, "dataset": "ifeval"}
            sink.write(json.dumps(record) + "\n")
    return path


def make_rlvr_inputs(root: Path, train_prompts: int = 48, eval_prompts: int = 8) -> Path:
    """``root/policy_hf`` (a random tiny Llama), ``root/tokenizer``, ``root/rlvr.jsonl`` and ``root/eval.jsonl``."""
    config = preset("tiny", vocab_size=512, scan_layers=False)
    save_hf_checkpoint(root / "policy_hf", jax.device_get(init_params(config, jax.random.PRNGKey(5))), config)
    write_prompts(root / "rlvr.jsonl", train_prompts)
    write_prompts(root / "eval.jsonl", eval_prompts)
    build_tiny_tokenizer(root / "tokenizer")
    return root


def rlvr_input_arguments(root: Path) -> list[str]:
    """The ``tulu-jax rlvr`` overrides that point a config at ``make_rlvr_inputs(root)``."""
    return [f"model.source={root / 'policy_hf'}", "model.overrides={}",
            f"data.sources=[{{path: {root / 'rlvr.jsonl'}}}]", f"data.eval_sources=[{{path: {root / 'eval.jsonl'}}}]",
            f"data.tokenizer={root / 'tokenizer'}"]
