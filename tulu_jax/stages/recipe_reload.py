"""The recipe's last check: the exported model, loaded by ``transformers`` alone, answers like ours."""

from __future__ import annotations

from pathlib import Path


def transformers_greedy_answer(export_dir: Path, messages: list[dict], max_new_tokens: int) -> str:
    """Greedy answer of ``AutoModelForCausalLM`` + ``AutoTokenizer`` from ``export_dir`` (its chat template)."""
    import torch
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(export_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(
            **inputs, do_sample=False, max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
