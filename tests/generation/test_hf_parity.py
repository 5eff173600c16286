"""Greedy generation equals transformers ``generate(do_sample=False)`` on the same weights, left-padded."""

import jax
import numpy as np
import torch

from tulu_jax.generation import SamplingConfig, generate, left_pad

NEW_TOKENS = 64
GREEDY = SamplingConfig(temperature=0.0)


def hf_greedy(hf_model, ids, mask, eos_token_id):
    with torch.no_grad():
        out = hf_model.generate(
            torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            eos_token_id=eos_token_id,
            pad_token_id=0,
        )
    return out[:, ids.shape[1] :].numpy()


def test_greedy_tokens_equal_transformers_for_mixed_prompt_lengths(hf_tiny, mixed_length_prompts):
    hf_model, config, params = hf_tiny
    ids, mask = left_pad(mixed_length_prompts, pad_id=0)
    ours = generate(params, config, ids, mask, jax.random.PRNGKey(0), sampling=GREEDY, max_new_tokens=NEW_TOKENS)
    reference = hf_greedy(hf_model, ids, mask, eos_token_id=None)
    assert reference.shape == (4, NEW_TOKENS)
    np.testing.assert_array_equal(np.asarray(ours.tokens), reference)
    np.testing.assert_array_equal(np.asarray(ours.lengths), [NEW_TOKENS] * 4)
    assert not np.asarray(ours.stopped).any()


def test_rows_stop_at_eos_exactly_like_transformers(hf_tiny, mixed_length_prompts):
    hf_model, config, params = hf_tiny
    ids, mask = left_pad(mixed_length_prompts, pad_id=0)
    free = np.asarray(generate(params, config, ids, mask, jax.random.PRNGKey(0), sampling=GREEDY, max_new_tokens=NEW_TOKENS).tokens)
    # A stop token that the first row emits early but not at the start, so the stop path is exercised.
    stop = int(free[0, 5])
    ours = generate(
        params, config, ids, mask, jax.random.PRNGKey(0), sampling=GREEDY, max_new_tokens=NEW_TOKENS, stop_ids=[stop], pad_id=0
    )
    reference = hf_greedy(hf_model, ids, mask, eos_token_id=stop)
    tokens = np.asarray(ours.tokens)
    # transformers stops once every row is done: its output may be shorter; the rest is padding in ours.
    np.testing.assert_array_equal(tokens[:, : reference.shape[1]], reference)
    assert (tokens[:, reference.shape[1] :] == 0).all()
    first_stop = [list(row).index(stop) + 1 if stop in row else NEW_TOKENS for row in free]
    np.testing.assert_array_equal(np.asarray(ours.lengths), first_stop)
    np.testing.assert_array_equal(np.asarray(ours.stopped), [stop in row for row in free])
    assert bool(ours.stopped[0]) and int(ours.lengths[0]) <= 6
