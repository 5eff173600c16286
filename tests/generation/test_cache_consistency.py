"""The logits the KV-cache loop samples from equal a full-sequence forward pass at every step."""

import jax
import jax.numpy as jnp
import numpy as np

from tulu_jax.generation import SamplingConfig, generate, left_pad, prompt_positions
from tulu_jax.models import Llama

NEW_TOKENS = 12


def test_decode_logits_equal_full_forward_at_every_step(hf_tiny, mixed_length_prompts):
    _, config, params = hf_tiny
    ids, mask = left_pad(mixed_length_prompts, pad_id=0)
    out = generate(
        params, config, ids, mask, jax.random.PRNGKey(3), sampling=SamplingConfig(temperature=1.0),
        max_new_tokens=NEW_TOKENS, return_logits=True,
    )
    batch, prompt_length = ids.shape
    # The whole sequence at once: left-padded prompt then the sampled tokens, positions continuing per row.
    sequence = jnp.concatenate([ids, out.tokens], axis=1)
    lengths = mask.sum(axis=1, keepdims=True)
    positions = jnp.concatenate([prompt_positions(mask), lengths + jnp.arange(NEW_TOKENS)[None]], axis=1)
    segments = jnp.concatenate([mask, np.ones((batch, NEW_TOKENS), np.int32)], axis=1)
    full = Llama(config).apply({"params": params}, sequence, positions=positions, segment_ids=segments)
    # The logits at column P-1+t predict new token t.
    expected = full[:, prompt_length - 1 : prompt_length - 1 + NEW_TOKENS]
    np.testing.assert_allclose(np.asarray(out.logits), np.asarray(expected), atol=1e-4)
    # And the reported log-probs are log_softmax of those logits at the drawn tokens (temperature 1).
    want = jnp.take_along_axis(jax.nn.log_softmax(expected, axis=-1), out.tokens[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(np.asarray(out.logprobs), np.asarray(want), atol=1e-4)


def test_padding_does_not_change_a_row(hf_tiny, mixed_length_prompts):
    """The same prompt generates the same tokens whatever the padded length or its batch neighbours."""
    _, config, params = hf_tiny
    greedy = SamplingConfig(temperature=0.0)
    ids, mask = left_pad(mixed_length_prompts, pad_id=0)
    batched = generate(params, config, ids, mask, jax.random.PRNGKey(0), sampling=greedy, max_new_tokens=8)
    alone_ids, alone_mask = left_pad(mixed_length_prompts[2:3], pad_id=0, length=32)
    alone = generate(params, config, alone_ids, alone_mask, jax.random.PRNGKey(0), sampling=greedy, max_new_tokens=8)
    np.testing.assert_array_equal(np.asarray(batched.tokens[2]), np.asarray(alone.tokens[0]))
