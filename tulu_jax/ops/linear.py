"""A bias-free linear map whose backward pass picks matmul layouts the CPU kernels run without copies.

XLA's CPU matmul kernels take the contracting dimension of the left operand last, so the weight
gradient ``x^T @ g`` needs one operand transposed in memory. Left alone, XLA transposes the (often
wider) output gradient, once per weight; here the input ``x`` is transposed instead, once, and the
projections that share an input (q/k/v, gate/up) share that copy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


@jax.custom_vjp
def _matmul(x2d: jnp.ndarray, w2d: jnp.ndarray) -> jnp.ndarray:
    return x2d @ w2d


def _matmul_forward(x2d, w2d):
    return x2d @ w2d, (x2d, w2d)


def _matmul_backward(residuals, grad):
    x2d, w2d = residuals
    grad_x = jax.lax.dot_general(grad, w2d, (((1,), (1,)), ((), ())))
    # The barrier keeps the transpose a real, shared copy instead of being folded back into the dot.
    x_transposed = jax.lax.optimization_barrier(x2d.T)
    return grad_x, x_transposed @ grad


_matmul.defvjp(_matmul_forward, _matmul_backward)


def layout_friendly_backward() -> bool:
    """Whether :func:`linear` takes the custom backward: on the CPU backend (TPU layouts need no help)."""
    return jax.default_backend() == "cpu"


def linear(x: jnp.ndarray, kernel: jnp.ndarray, num_input_dims: int) -> jnp.ndarray:
    """Contract the last ``num_input_dims`` dims of ``x`` with the leading dims of ``kernel``.

    Same values as the einsum; only the backward's matmul layouts differ (see the module docstring).
    """
    if not layout_friendly_backward():
        return jnp.tensordot(x, kernel, axes=num_input_dims)
    input_shape, output_shape = kernel.shape[:num_input_dims], kernel.shape[num_input_dims:]
    x2d = x.reshape(-1, math.prod(input_shape))
    y = _matmul(x2d, kernel.reshape(math.prod(input_shape), math.prod(output_shape)))
    return y.reshape(*x.shape[: x.ndim - num_input_dims], *output_shape)
