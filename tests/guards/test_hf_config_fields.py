"""HF config fields we do not model are kept verbatim on export; fields that change the computation are refused."""

from __future__ import annotations

import json

import pytest

from tulu_jax.config import from_dict, to_dict
from tulu_jax.errors import ConfigError
from tulu_jax.models.config import LlamaConfig, from_hf_dict, to_hf_dict

# The shape of meta-llama/Llama-3.1-8B-Instruct's config.json, shrunk.
INSTRUCT = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 64,
    "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 131072, "mlp_bias": False,
    "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                            "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.43.0",
    "use_cache": True, "vocab_size": 128256, "a_future_field": {"nested": [1, 2]},
}


def test_list_eos_and_unknown_fields_survive_import_and_export():
    config = from_hf_dict(dict(INSTRUCT))
    assert config.eos_token_id == 128001 and config.eos_token_ids == (128001, 128008, 128009)
    exported = to_hf_dict(config, torch_dtype="bfloat16")
    assert exported["eos_token_id"] == [128001, 128008, 128009]  # before: 128001 only
    for key in ("initializer_range", "pretraining_tp", "use_cache", "attention_dropout", "transformers_version",
                "a_future_field"):
        assert exported[key] == INSTRUCT[key], key
    # The modelled fields are ours, not copied: a second round trip is a fixed point.
    assert to_hf_dict(from_hf_dict(exported), torch_dtype="bfloat16") == exported


def test_transformers_reads_the_exported_eos_list():
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.LlamaConfig(**to_hf_dict(from_hf_dict(dict(INSTRUCT))))
    assert hf_config.eos_token_id == [128001, 128008, 128009] and hf_config.initializer_range == 0.02


def test_extra_survives_the_saved_run_config_and_keeps_the_config_hashable():
    config = from_hf_dict(dict(INSTRUCT))
    again = from_dict(LlamaConfig, json.loads(json.dumps(to_dict(config))), where="resolved_model")
    assert again.extra == config.extra and again == config and hash(again) == hash(config.replace(extra={}))


def test_a_changed_eos_is_not_overwritten_by_the_stale_list():
    config = from_hf_dict(dict(INSTRUCT)).replace(eos_token_id=5)
    assert to_hf_dict(config)["eos_token_id"] == 5


@pytest.mark.parametrize("changes, field", [({"hidden_act": "gelu"}, "hidden_act='gelu'"),
                                            ({"attention_bias": True}, "attention_bias=True"),
                                            ({"mlp_bias": True}, "mlp_bias=True")])
def test_fields_that_change_the_computation_are_refused(changes, field):
    with pytest.raises(ConfigError, match=rf"model/config.json: .*{field}.*change the model's outputs"):
        from_hf_dict({**INSTRUCT, **changes}, where="model/config.json")
    from_hf_dict({**INSTRUCT, "hidden_act": "swish"})  # transformers' other name for silu
