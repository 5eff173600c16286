"""A random tiny transformers Llama saved locally, and the same weights loaded as tulu-jax params."""

import numpy as np
import pytest

from tests.models.hf_reference import save_random_hf_llama
from tulu_jax.hf import load_hf_checkpoint


@pytest.fixture(scope="session")
def hf_tiny(tmp_path_factory):
    """``(hf_model, config, params)``: transformers model and our float32 params of the same weights."""
    directory = tmp_path_factory.mktemp("hf_tiny")
    hf_model = save_random_hf_llama(directory)
    config, params = load_hf_checkpoint(directory)
    return hf_model, config, params


@pytest.fixture(scope="session")
def mixed_length_prompts():
    """Four prompts of different lengths (3..11 tokens) over the tiny vocabulary, avoiding ids 0 and 1."""
    rng = np.random.default_rng(0)
    return [rng.integers(2, 96, size=n).tolist() for n in (5, 11, 3, 8)]


def numpy_random_params(config, seed=0):
    """Random params (normal, std 0.02) drawn in NumPy from the model's parameter shapes: much faster to
    build than compiling the model's initialiser, and any random weights serve these tests."""
    import jax

    from tulu_jax.models.params import param_shapes

    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: (0.02 * rng.standard_normal(leaf.shape)).astype(np.float32), param_shapes(config))
