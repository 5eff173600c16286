import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tulu_jax.objectives import chunked_token_logprobs, token_entropy_from_logits, token_logprobs_from_logits

from . import numpy_reference as ref


def _inputs(batch=2, length=24, embed=16, vocab=64, seed=0):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=(batch, length, embed)), jnp.float32)
    unembedding = jnp.asarray(rng.normal(size=(embed, vocab)) * 0.3, jnp.float32)
    targets = jnp.asarray(rng.integers(0, vocab, size=(batch, length)), jnp.int32)
    return hidden, unembedding, targets


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_and_entropy_match_numpy(temperature):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 5, 40)) * 3
    targets = rng.integers(0, 40, size=(3, 5))
    expected_log_softmax = ref.log_softmax(logits, temperature)
    expected = np.take_along_axis(expected_log_softmax, targets[..., None], axis=-1)[..., 0]
    expected_entropy = -(np.exp(expected_log_softmax) * expected_log_softmax).sum(-1)
    logits32 = jnp.asarray(logits, jnp.float32)
    logprobs = token_logprobs_from_logits(logits32, targets, temperature)
    np.testing.assert_allclose(logprobs, expected, rtol=1e-6, atol=1e-6)
    entropy = token_entropy_from_logits(logits32, temperature)
    np.testing.assert_allclose(entropy, expected_entropy, rtol=1e-6, atol=1e-6)


def test_bf16_logits_are_scored_in_float32():
    rng = np.random.default_rng(2)
    logits = jnp.asarray(rng.normal(size=(1, 4, 1000)) * 4, jnp.bfloat16)
    targets = jnp.asarray(rng.integers(0, 1000, size=(1, 4)))
    result = token_logprobs_from_logits(logits, targets)
    assert result.dtype == jnp.float32
    exact_log_softmax = ref.log_softmax(np.asarray(logits.astype(jnp.float32)))
    exact = np.take_along_axis(exact_log_softmax, np.asarray(targets)[..., None], -1)[..., 0]
    np.testing.assert_allclose(result, exact, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("chunk_size", [8, 7, 24, 100])  # divides, does not divide, whole length, longer than length
def test_chunked_equals_unchunked_in_value_and_gradient(chunk_size):
    hidden, unembedding, targets = _inputs()
    weights = jnp.asarray(np.random.default_rng(3).random(targets.shape), jnp.float32)  # a generic cotangent

    def full(hidden, unembedding):
        logits = jnp.einsum("bld,dv->blv", hidden, unembedding)
        logprobs = token_logprobs_from_logits(logits, targets, 0.9)
        return jnp.sum(logprobs * weights) + jnp.sum(token_entropy_from_logits(logits, 0.9)), logprobs

    def chunked(hidden, unembedding):
        logprobs, entropy = chunked_token_logprobs(
            hidden, unembedding, targets, chunk_size=chunk_size, temperature=0.9, return_entropy=True
        )
        return jnp.sum(logprobs * weights) + jnp.sum(entropy), logprobs

    (full_value, full_logprobs), full_grads = jax.jit(jax.value_and_grad(full, argnums=(0, 1), has_aux=True))(
        hidden, unembedding
    )
    (chunk_value, chunk_logprobs), chunk_grads = jax.jit(jax.value_and_grad(chunked, argnums=(0, 1), has_aux=True))(
        hidden, unembedding
    )
    np.testing.assert_allclose(chunk_logprobs, full_logprobs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(chunk_value, full_value, rtol=1e-5)
    for chunk_grad, full_grad in zip(chunk_grads, full_grads):
        np.testing.assert_allclose(chunk_grad, full_grad, rtol=1e-5, atol=1e-5)


def test_chunked_bf16_compute_stays_close():
    hidden, unembedding, targets = _inputs()
    exact = chunked_token_logprobs(hidden, unembedding, targets, chunk_size=8)
    low_precision = chunked_token_logprobs(hidden, unembedding, targets, chunk_size=8, compute_dtype=jnp.bfloat16)
    assert low_precision.dtype == jnp.float32
    np.testing.assert_allclose(low_precision, exact, atol=0.1)


# Memory check. Shapes chosen so that one [batch, length, vocab] float32 buffer (8 MiB) dwarfs a chunk (0.5 MiB).
MEMORY_SHAPES = dict(batch=2, length=256, embed=32, vocab=4096)
MEMORY_CHUNK = 16


def _loss_and_grad(chunked: bool):
    hidden, unembedding, targets = _inputs(**MEMORY_SHAPES)

    def loss(hidden, unembedding):
        if chunked:
            return jnp.sum(chunked_token_logprobs(hidden, unembedding, targets, chunk_size=MEMORY_CHUNK))
        return jnp.sum(token_logprobs_from_logits(hidden @ unembedding, targets))

    return jax.value_and_grad(loss, argnums=(0, 1)), (hidden, unembedding)


def _largest_float32_intermediate(jaxpr) -> int:
    """Element count of the biggest float32 value any equation produces, sub-jaxprs (scan, remat) included."""
    largest = 0
    for equation in jaxpr.eqns:
        for var in equation.outvars:
            aval = var.aval
            if getattr(aval, "dtype", None) == jnp.float32:
                largest = max(largest, int(np.prod(aval.shape)))
        for sub in _subjaxprs(equation):
            largest = max(largest, _largest_float32_intermediate(sub))
    return largest


def _subjaxprs(equation):
    """The jaxprs nested in an equation's parameters (scan/map bodies, checkpointed functions, ...)."""
    for value in equation.params.values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if hasattr(item, "jaxpr") and hasattr(item.jaxpr, "eqns"):
                yield item.jaxpr
            elif hasattr(item, "eqns"):
                yield item


def test_chunked_loss_and_gradient_never_hold_full_logits():
    """Two measurements of the jitted value-and-gradient.

    1. The jaxpr (forward and backward, scan and remat bodies included) has no float32 value with as
       many elements as [batch, length, vocab]; the biggest is one chunk's logits.
    2. XLA's compiled temp buffers stay below one full float32 logits buffer, whereas the unchunked
       version needs at least that.
    """
    batch, length, vocab = MEMORY_SHAPES["batch"], MEMORY_SHAPES["length"], MEMORY_SHAPES["vocab"]
    full_logits_elements = batch * length * vocab
    chunk_logits_elements = batch * MEMORY_CHUNK * vocab

    chunked_fn, args = _loss_and_grad(chunked=True)
    full_fn, _ = _loss_and_grad(chunked=False)
    assert _largest_float32_intermediate(jax.make_jaxpr(chunked_fn)(*args).jaxpr) == chunk_logits_elements
    assert _largest_float32_intermediate(jax.make_jaxpr(full_fn)(*args).jaxpr) == full_logits_elements

    chunked_temp = jax.jit(chunked_fn).lower(*args).compile().memory_analysis().temp_size_in_bytes
    full_temp = jax.jit(full_fn).lower(*args).compile().memory_analysis().temp_size_in_bytes
    full_logits_bytes = 4 * full_logits_elements
    assert full_temp >= full_logits_bytes
    assert chunked_temp < full_logits_bytes / 2, (chunked_temp, full_logits_bytes)
