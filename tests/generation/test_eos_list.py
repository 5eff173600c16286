"""A model whose config.json lists several EOS ids (as Llama 3.1 Instruct's does) stops on any of them, in
tulu-jax's generation as in ``transformers``' ``generate`` on the exported model."""

import json

import jax
import numpy as np
import torch
import transformers

from tests.generation.conftest import numpy_random_params
from tests.helpers.tiny_tokenizer import build_tiny_tokenizer
from tulu_jax.generation import SamplingConfig, generate, left_pad
from tulu_jax.generation.loading import load_model_for_inference
from tulu_jax.generation.prompts import decode_response
from tulu_jax.generation.text import complete, stop_ids_for
from tulu_jax.hf import save_hf_checkpoint
from tulu_jax.models import preset

PROMPT = [5, 17, 42, 99, 7, 230]
NEW_TOKENS = 24
GREEDY = SamplingConfig(temperature=0.0)


def first_fresh_token(tokens, avoid, start=2):
    """The first position from ``start`` whose token neither appeared before it nor is in ``avoid``."""
    for position in range(start, len(tokens)):
        if tokens[position] not in tokens[:position] and not avoid & set(tokens[: position + 1]):
            return position
    raise AssertionError(f"no fresh token in {tokens}")


def test_generation_stops_at_the_second_id_of_a_listed_eos_like_transformers(tmp_path):
    tokenizer_dir = build_tiny_tokenizer(tmp_path / "tokenizer")
    from data_pipeline.tokenizer import load_tokenizer

    eos, pad = load_tokenizer(tokenizer_dir).eos_id, load_tokenizer(tokenizer_dir).pad_id
    plain = preset("tiny", vocab_size=512, eos_token_id=eos, pad_token_id=pad)
    params = numpy_random_params(plain)
    ids, mask = left_pad([PROMPT], pad_id=pad)
    free = np.asarray(generate(params, plain, ids, mask, jax.random.PRNGKey(0), sampling=GREEDY,
                               max_new_tokens=NEW_TOKENS).tokens)[0].tolist()
    # The second listed id is one the model emits a few tokens in; the third is one it never emits.
    position = first_fresh_token(free, avoid={eos, pad})
    second = free[position]
    third = next(token for token in range(2, 512) if token not in free and token not in (eos, pad))
    listed = plain.replace(extra={"eos_token_id": [eos, second, third]})
    export = save_hf_checkpoint(tmp_path / "model", params, listed, tokenizer_dir=tokenizer_dir)
    assert json.loads((export / "config.json").read_text())["eos_token_id"] == [eos, second, third]

    model = load_model_for_inference(export)
    assert set(stop_ids_for(model.tokenizer, model.config)) == {eos, second, third}
    [completion] = complete(model.params, model.config, model.tokenizer, [PROMPT], sampling=GREEDY,
                            max_new_tokens=NEW_TOKENS, batch_size=1)
    assert completion.stopped and completion.num_tokens == position + 1

    # transformers reads the same export (its generation_config.json) and stops at the same token.
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    with torch.no_grad():
        hf_out = hf_model.generate(torch.tensor([PROMPT]), attention_mask=torch.ones(1, len(PROMPT), dtype=torch.long),
                                   do_sample=False, max_new_tokens=NEW_TOKENS)
    hf_tokens = hf_out[0, len(PROMPT):].tolist()
    assert hf_tokens == free[: position + 1]
    assert completion.text == decode_response(model.tokenizer, hf_tokens, len(hf_tokens), stopped=True)
