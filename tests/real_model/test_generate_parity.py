"""``tulu-jax generate`` on the real SmolLM2-135M-Instruct, greedy with the model's own chat template, gives
exactly transformers' ``generate`` tokens on real prompts (4 x 32 in ``make test``, 20 x 64 marked slow)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers.real_conversations import gsm8k_rows



def transformers_greedy(model, tokenizer, conversations, new_tokens: int) -> list[str]:
    """Left-padded batch through ``generate(do_sample=False)``; each response cut at the first EOS."""
    prompts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=False)
               for c in conversations]
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), tokenizer.pad_token_id, np.int64)
    mask = np.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt):], mask[row, width - len(prompt):] = prompt, 1
    with torch.no_grad():
        out = model.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), do_sample=False,
                             max_new_tokens=new_tokens, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    responses = []
    for row in out[:, width:].tolist():
        stop = row.index(tokenizer.eos_token_id) if tokenizer.eos_token_id in row else len(row)
        responses.append(tokenizer.decode(row[:stop], skip_special_tokens=False))
    return responses


def compare_generate(smollm2_dir, smollm2_torch, tmp_path, prompts: int, new_tokens: int):
    import transformers

    conversations = [[{"role": "user", "content": row["question"]}] for row in gsm8k_rows("test", prompts, 100)]
    prompt_file = tmp_path / "prompts.jsonl"
    prompt_file.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    out = tmp_path / "responses.jsonl"
    # As a user runs it on one CPU device (the suite forces 8 host devices; see test_sharded_generation.py).
    environment = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "tulu_jax.cli", "generate", "--checkpoint", str(smollm2_dir),
               "--input", str(prompt_file), "--out", str(out), "--max-new-tokens", str(new_tokens),
               "--batch-size", str(prompts)]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr[-2000:]
    ours = [json.loads(line) for line in out.read_text().splitlines()]
    reference = transformers_greedy(smollm2_torch, transformers.AutoTokenizer.from_pretrained(smollm2_dir),
                                    conversations, new_tokens)
    assert [record["response"] for record in ours] == reference
    stopped = sum(record["stopped"] for record in ours)
    print(f"\n{prompts} prompts x {new_tokens} tokens: identical; {stopped} stopped at <|im_end|> before the limit")
    assert all(len(text) > new_tokens for text in reference)  # real answers, not empty strings


def test_generate_command_equals_transformers_greedy(smollm2_dir, smollm2_torch, tmp_path):
    compare_generate(smollm2_dir, smollm2_torch, tmp_path, prompts=4, new_tokens=32)


@pytest.mark.slow
def test_generate_command_equals_transformers_greedy_20_prompts_64_tokens(smollm2_dir, smollm2_torch, tmp_path):
    compare_generate(smollm2_dir, smollm2_torch, tmp_path, prompts=20, new_tokens=64)
