"""Random tiny ``transformers`` Llama models built locally (never downloaded), the reference for parity tests."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers


def tiny_hf_config(*, tie_word_embeddings: bool = False, vocab_size: int = 96) -> transformers.LlamaConfig:
    """GQA (4 heads / 2 KV heads) with llama3 rope scaling whose original context (16) is shorter than tests use."""
    return transformers.LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=112,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=1,
        pad_token_id=0,
    )


def save_random_hf_llama(directory: Path, *, tie_word_embeddings: bool = False, seed: int = 0) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(tiny_hf_config(tie_word_embeddings=tie_word_embeddings)).float().eval()
    # Norm scales start at 1; randomise them so a wrong norm mapping cannot hide.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(directory, safe_serialization=True)
    return model
