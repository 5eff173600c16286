"""Tülu 3 from base Llama 3.1: the real Llama 3 tokenizer plus ``<pad>`` (128,257 tokens) against a 128,256-row
checkpoint. SFT grows the vocabulary to 128,264 (a multiple of 8, as open-instruct does), trains, exports, and
transformers reloads the export with our logits and renders the Tülu template.

The tokenizer is Meta's tiktoken file shipped in the ``llama-models`` package (Llama 3 Community License),
converted in tests/helpers/llama3_tokenizer.py. The model is tiny and random except for its vocabulary.
"""

import json

import jax
import numpy as np
import torch
import transformers

from data_pipeline.chat_template import TULU_CHAT_TEMPLATE
from tests.helpers.llama3_tokenizer import PAD, build_llama3_tokenizer
from tests.models.hf_reference import tiny_hf_config
from tests.training.sft_data import write_sft_jsonl
from tulu_jax.config import load_config
from tulu_jax.hf import load_hf_checkpoint
from tulu_jax.models import Llama
from tulu_jax.stages.sft import SFTConfig, run_sft


def test_sft_grows_the_vocabulary_for_the_pad_token_and_exports_what_transformers_reloads(tmp_path):
    tokenizer_dir = build_llama3_tokenizer(tmp_path / "tokenizer", pad_token=PAD, chat_template=TULU_CHAT_TEMPLATE)
    hf_config = tiny_hf_config(vocab_size=128256)
    hf_config.hidden_size, hf_config.intermediate_size, hf_config.num_hidden_layers = 16, 32, 1
    hf_config.num_attention_heads, hf_config.num_key_value_heads, hf_config.head_dim = 2, 1, 8
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(hf_config).float().save_pretrained(tmp_path / "base", safe_serialization=True)
    write_sft_jsonl(tmp_path / "train.jsonl", copies=2)
    config = load_config(SFTConfig, "configs/sft_tiny_cpu.yaml", [
        f"output_dir={tmp_path / 'run'}", f"model.source={tmp_path / 'base'}", "model.overrides={}",
        f"data.sources=[{{path: {tmp_path / 'train.jsonl'}}}]", f"data.tokenizer={tokenizer_dir}",
        "training.max_steps=2", "training.micro_batches=1", "checkpoint.save_every=0", "training.tensorboard=false",
        "loss.logits_chunk_size=64",
    ])
    export = run_sft(config).export_dir

    exported = json.loads((export / "config.json").read_text())
    assert exported["vocab_size"] == 128264 and exported["pad_token_id"] == 128256
    model = transformers.AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    ours_config, params = load_hf_checkpoint(export)
    ids = np.array([[128000, 9906, 11, 1917, 0, 128256, 128263, 13]], np.int32)
    ours = np.asarray(Llama(ours_config).apply({"params": jax.tree.map(np.asarray, params)}, ids))
    with torch.no_grad():
        theirs = model(torch.tensor(ids, dtype=torch.long)).logits.numpy()
    assert ours.shape[-1] == 128264
    np.testing.assert_allclose(ours, theirs, atol=1e-4, rtol=0)

    tokenizer = transformers.AutoTokenizer.from_pretrained(export)
    messages = [{"role": "user", "content": "What is 12 plus 30?"}, {"role": "assistant", "content": "42."}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == \
        "<|user|>\nWhat is 12 plus 30?\n<|assistant|>\n42.<|end_of_text|>"
    assert tokenizer.pad_token == PAD and tokenizer.convert_tokens_to_ids(PAD) == 128256
