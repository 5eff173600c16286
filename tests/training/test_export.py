"""The exported directory loads in transformers, gives our logits, and chats with the Tülu template."""

from __future__ import annotations

import json

import jax
import numpy as np
import torch

from data_pipeline.chat_template import TULU_CHAT_TEMPLATE, render_tulu
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tests.training.conftest import micro_config
from tulu_jax.models import Llama, init_params
from tulu_jax.stages.hf_export import export_hf


def test_export_loads_in_transformers_with_matching_logits_and_chat_template(tmp_path):
    from transformers import AutoTokenizer, LlamaForCausalLM

    config = micro_config(vocab_size=512, num_layers=2)
    params = jax.device_get(init_params(config, jax.random.PRNGKey(7)))
    tokenizer_dir = build_tiny_tokenizer(tmp_path / "tokenizer")
    special = {"bos": None, "eos": 1, "pad": 2}
    directory = export_hf(tmp_path / "hf", params, config, str(tokenizer_dir), TULU_CHAT_TEMPLATE, special,
                          run_config={"stage": "sft"})

    model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    ids = np.random.default_rng(0).integers(0, 512, (2, 12)).astype(np.int32)
    ours = np.asarray(Llama(config).apply({"params": params}, ids))
    with torch.no_grad():
        theirs = model(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)
    assert model.generation_config.eos_token_id == 1

    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert json.loads((directory / "tokenizer_config.json").read_text())["chat_template"] == TULU_CHAT_TEMPLATE
    messages = [{"role": "user", "content": "What is 12 plus 30?"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == render_tulu(messages, tokenizer.eos_token, add_generation_prompt=True) == "<|user|>\nWhat is 12 plus 30?\n<|assistant|>\n"
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**prompt, max_new_tokens=3, do_sample=False)
    assert output.shape[1] >= prompt["input_ids"].shape[1] + 1
    assert json.loads((directory / "tulu_jax_config.json").read_text()) == {"stage": "sft"}
