"""Per-token log-probabilities and entropies, with a chunked path that never holds ``[batch, length, vocab]`` logits.

For a Llama 3.1 vocabulary (128k entries) the float32 logits of one 4096-token row take 2 GB, so the
training losses use :func:`chunked_token_logprobs`: the unembedding is applied to a few positions at a
time, and ``jax.checkpoint`` makes the backward pass recompute each chunk's logits instead of storing them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tulu_jax.ops.linear import linear


def token_logprobs_from_logits(logits, targets, temperature: float = 1.0) -> jnp.ndarray:
    """``log softmax(logits / temperature)[target]`` per position, computed in float32: ``[batch, length]``."""
    scaled = jnp.asarray(logits).astype(jnp.float32) / temperature  # [batch, length, vocab]
    target_logits = jnp.take_along_axis(scaled, jnp.asarray(targets)[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return target_logits - jax.nn.logsumexp(scaled, axis=-1)


def token_entropy_from_logits(logits, temperature: float = 1.0) -> jnp.ndarray:
    """Entropy of ``softmax(logits / temperature)`` per position, in float32 nats: ``[batch, length]``."""
    scaled = jnp.asarray(logits).astype(jnp.float32) / temperature
    log_probs = jax.nn.log_softmax(scaled, axis=-1)
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def _chunk_logprobs_and_entropy(hidden_chunk, unembedding, target_chunk, temperature, compute_dtype):
    """Log-probs and entropies of one chunk of positions: ``[batch, chunk]`` each."""
    if jnp.dtype(compute_dtype) == jnp.float32:
        logits = linear(hidden_chunk.astype(jnp.float32), unembedding.astype(jnp.float32), 1)
    else:  # [batch, chunk, vocab], float32 accumulation for bf16 inputs
        logits = jnp.einsum("bcd,dv->bcv", hidden_chunk.astype(compute_dtype), unembedding.astype(compute_dtype),
                            preferred_element_type=jnp.float32)
    logits = logits / temperature
    log_normaliser = jax.nn.logsumexp(logits, axis=-1)
    target_logits = jnp.take_along_axis(logits, target_chunk[..., None], axis=-1)[..., 0]
    probs = jnp.exp(logits - log_normaliser[..., None])
    entropy = log_normaliser - jnp.sum(probs * logits, axis=-1)
    return target_logits - log_normaliser, entropy


def chunked_token_logprobs(
    hidden,
    unembedding,
    targets,
    *,
    chunk_size: int,
    temperature: float = 1.0,
    compute_dtype=None,
    return_entropy: bool = False,
):
    """Same values as ``token_logprobs_from_logits(hidden @ unembedding, targets)`` without full logits.

    ``hidden`` is ``[batch, length, embed]`` (final-norm states), ``unembedding`` ``[embed, vocab]``.
    Only ``[batch, chunk_size, vocab]`` float32 logits exist at a time, forward and backward.
    ``compute_dtype`` is the matmul input dtype (default: the promoted input dtype); accumulation is float32.
    Returns ``logprobs [batch, length]``, or ``(logprobs, entropy)`` when ``return_entropy``.
    """
    hidden = jnp.asarray(hidden)
    unembedding = jnp.asarray(unembedding)
    targets = jnp.asarray(targets, dtype=jnp.int32)
    if compute_dtype is None:
        compute_dtype = jnp.result_type(hidden.dtype, unembedding.dtype)
    batch, length, embed = hidden.shape
    chunk_size = max(1, min(int(chunk_size), length))
    num_chunks = -(-length // chunk_size)
    padding = num_chunks * chunk_size - length
    if padding:
        hidden = jnp.pad(hidden, ((0, 0), (0, padding), (0, 0)))
        targets = jnp.pad(targets, ((0, 0), (0, padding)))
    # Chunks lead so that lax.map walks over them: [chunks, batch, chunk, ...].
    hidden_chunks = hidden.reshape(batch, num_chunks, chunk_size, embed).swapaxes(0, 1)
    target_chunks = targets.reshape(batch, num_chunks, chunk_size).swapaxes(0, 1)

    def one_chunk(hidden_chunk, target_chunk):
        return _chunk_logprobs_and_entropy(hidden_chunk, unembedding, target_chunk, temperature, compute_dtype)

    if num_chunks > 1:  # Rematerialised: the backward pass keeps each chunk's inputs and recomputes its logits.
        one_chunk = jax.checkpoint(one_chunk)

    logprob_chunks, entropy_chunks = jax.lax.map(lambda pair: one_chunk(*pair), (hidden_chunks, target_chunks))
    logprobs = logprob_chunks.swapaxes(0, 1).reshape(batch, num_chunks * chunk_size)[:, :length]
    if not return_entropy:
        return logprobs
    entropy = entropy_chunks.swapaxes(0, 1).reshape(batch, num_chunks * chunk_size)[:, :length]
    return logprobs, entropy
