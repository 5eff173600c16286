"""The Llama 3.1 model config: shapes, rope scaling, dtype/remat/scan policy, presets, and the HF mapping."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from tulu_jax.errors import ConfigError


@dataclass(frozen=True)
class RopeScaling:
    """Llama 3.1 ("llama3") frequency scaling; every number comes from the checkpoint's config."""

    rope_type: Literal["llama3", "default"] = "llama3"
    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int = 128256
    hidden_size: int = 4096
    intermediate_size: int = 14336
    num_layers: int = 32
    num_heads: int = 32
    num_kv_heads: int = 8
    head_dim: Optional[int] = None  # default hidden_size // num_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling: Optional[RopeScaling] = field(default_factory=RopeScaling)
    max_position_embeddings: int = 131072
    tie_word_embeddings: bool = False
    bos_token_id: Optional[int] = 128000
    eos_token_id: Optional[int] = 128001
    pad_token_id: Optional[int] = None
    # Execution policy (not part of the checkpoint).
    param_dtype: Literal["float32", "bfloat16"] = "float32"
    compute_dtype: Literal["float32", "bfloat16"] = "float32"
    remat: Literal["none", "full", "dots"] = "none"
    scan_layers: bool = True
    # Hugging Face config.json entries we do not model (initializer_range, use_cache ..., and a list
    # eos_token_id), kept verbatim so that export writes them back. Neither hashed nor compared: two configs
    # that differ only here build the same program.
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    # Attention kernels: "auto" = splash on TPU, xla elsewhere (see tulu_jax.models.layers.attention_implementation).
    # "splash" also makes decoding read only the filled part of the KV cache (models/decode_attention.py), and
    # the continuous sampler's decode steps read the KV pages in place (models/paged_attention_kernel.py).
    attention: Literal["auto", "xla", "splash"] = "auto"
    # Splash tile sizes along queries and keys (multiples of 128); 0 = the TPU generation's default.
    splash_block_q: int = 0
    splash_block_kv: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"model.{name} must be positive, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(
                f"model.num_heads ({self.num_heads}) must be a multiple of model.num_kv_heads ({self.num_kv_heads}) "
                "for grouped-query attention"
            )
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size ({self.hidden_size}) is not divisible by model.num_heads ({self.num_heads}); "
                "set model.head_dim explicitly"
            )
        if self.resolved_head_dim % 2:
            raise ConfigError(f"model.head_dim must be even for rotary embeddings, got {self.resolved_head_dim}")
        if self.attention not in ("auto", "xla", "splash"):
            raise ConfigError(f"model.attention must be one of auto, xla, splash; got {self.attention!r}")
        for name in ("splash_block_q", "splash_block_kv"):
            if getattr(self, name) < 0 or getattr(self, name) % 128:
                raise ConfigError(
                    f"model.{name} must be 0 (the TPU generation's default) or a positive multiple of 128, "
                    f"got {getattr(self, name)}"
                )

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_heads

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Every token that ends a reply: ``eos_token_id`` plus the others of an HF list (Llama 3.1 Instruct
        stops on ``<|eot_id|>`` and ``<|eom_id|>`` too)."""
        listed = self.extra.get("eos_token_id")
        ids = [self.eos_token_id] if self.eos_token_id is not None else []
        if isinstance(listed, list):
            ids += [token for token in listed if isinstance(token, int) and token not in ids]
        return tuple(ids)

    def replace(self, **changes: Any) -> "LlamaConfig":
        return dataclasses.replace(self, **changes)

    def num_params(self) -> int:
        """Parameter count from the shapes (embeddings and head included)."""
        d, f, v = self.hidden_size, self.intermediate_size, self.vocab_size
        hd = self.resolved_head_dim
        attention = d * hd * (self.num_heads * 2 + self.num_kv_heads * 2)
        layer = attention + 3 * d * f + 2 * d
        head = 0 if self.tie_word_embeddings else d * v
        return v * d + self.num_layers * layer + d + head


def _llama31(**shape: Any) -> LlamaConfig:
    return LlamaConfig(**shape)


PRESETS: dict[str, LlamaConfig] = {
    "llama3.1-8b": _llama31(hidden_size=4096, intermediate_size=14336, num_layers=32, num_heads=32, num_kv_heads=8),
    "llama3.1-70b": _llama31(hidden_size=8192, intermediate_size=28672, num_layers=80, num_heads=64, num_kv_heads=8),
    "llama3.1-405b": _llama31(
        hidden_size=16384, intermediate_size=53248, num_layers=126, num_heads=128, num_kv_heads=8
    ),
    # Tiny shapes for tests and the CPU demo; rope scaling kept with a short original context so it matters.
    "tiny": LlamaConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        rope_scaling=RopeScaling(factor=8.0, original_max_position_embeddings=32),
        bos_token_id=None,
        eos_token_id=1,
        pad_token_id=0,
    ),
    # The benchmark "small" config.
    "small": LlamaConfig(
        vocab_size=8192,
        hidden_size=512,
        intermediate_size=1536,
        num_layers=8,
        num_heads=8,
        num_kv_heads=4,
        rope_theta=500000.0,
        bos_token_id=None,
        eos_token_id=1,
        pad_token_id=0,
    ),
}


def preset(name: str, **overrides: Any) -> LlamaConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


# ---- Hugging Face LlamaConfig <-> ours -------------------------------------------------------------


# config.json keys read into (or written from) LlamaConfig's own fields; every other key is kept in ``extra``.
MODELLED_HF_KEYS = frozenset({
    "architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
    "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act", "rms_norm_eps", "rope_theta",
    "rope_scaling", "rope_parameters", "max_position_embeddings", "tie_word_embeddings", "attention_bias",
    "mlp_bias", "bos_token_id", "eos_token_id", "pad_token_id", "torch_dtype", "dtype",
})
SUPPORTED_HIDDEN_ACTS = ("silu", "swish")  # transformers maps both to SiLU


LLAMA3_ROPE_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
# config.json keys that must hold positive whole numbers (None: may be absent).
REQUIRED_HF_INTEGERS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
OPTIONAL_HF_INTEGERS = ("num_key_value_heads", "head_dim", "max_position_embeddings")


def _check_hf_numbers(hf: Any, where: str) -> None:
    """Raise ``ConfigError`` naming the key when a shape field of ``config.json`` is missing or not a positive
    integer (a damaged file would otherwise be a KeyError or TypeError far from here)."""
    if not isinstance(hf, dict):
        raise ConfigError(f"{where}: expected a JSON object of model settings, got {type(hf).__name__}")
    for key in REQUIRED_HF_INTEGERS + OPTIONAL_HF_INTEGERS:
        if key not in hf or (key in OPTIONAL_HF_INTEGERS and hf[key] is None):
            if key in REQUIRED_HF_INTEGERS:
                raise ConfigError(f"{where}: {key} is missing; a Llama config.json gives every one of "
                                  f"{', '.join(REQUIRED_HF_INTEGERS)}")
            continue
        value = hf[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: {key} must be a positive integer, got {value!r}")


def from_hf_dict(hf: dict[str, Any], where: str = "config.json") -> LlamaConfig:
    """Read a Hugging Face ``config.json`` mapping (transformers 4.x ``rope_scaling`` or 5.x ``rope_parameters``)."""
    if not isinstance(hf, dict):
        raise ConfigError(f"{where}: expected a JSON object of model settings, got {type(hf).__name__}")
    architectures = hf.get("architectures") or []
    model_type = hf.get("model_type")
    if model_type != "llama" or (architectures and not any("Llama" in a for a in architectures)):
        raise ConfigError(
            f"{where}: model_type={model_type!r}, architectures={architectures!r}: only Llama checkpoints "
            "(model_type 'llama', LlamaForCausalLM) can be converted"
        )
    _check_hf_numbers(hf, where)
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        key = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
        raise ConfigError(f"{where}: {key} must be a mapping (e.g. {{\"rope_type\": \"llama3\", \"factor\": 8.0, ...}}), "
                          f"got {rope!r}")
    rope_theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("llama3", "default"):
        raise ConfigError(f"{where}: rope type {rope_type!r} is not supported (llama3 or default)")
    scaling = None
    if rope_type == "llama3":
        missing = [key for key in LLAMA3_ROPE_KEYS if key not in rope]
        if missing:
            raise ConfigError(f"{where}: llama3 rope scaling lacks {', '.join(missing)}; a Llama 3.1 config.json has "
                              f"all of {', '.join(LLAMA3_ROPE_KEYS)}")
        scaling = RopeScaling(
            rope_type="llama3",
            factor=float(rope["factor"]),
            low_freq_factor=float(rope["low_freq_factor"]),
            high_freq_factor=float(rope["high_freq_factor"]),
            original_max_position_embeddings=int(rope["original_max_position_embeddings"]),
        )
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        raise ConfigError(
            f"{where}: attention_bias={hf.get('attention_bias')!r}, mlp_bias={hf.get('mlp_bias')!r}: biases are "
            "not supported (Llama 3.1 has none); converting would drop them and change the model's outputs"
        )
    hidden_act = hf.get("hidden_act", "silu")
    if hidden_act not in SUPPORTED_HIDDEN_ACTS:
        raise ConfigError(
            f"{where}: hidden_act={hidden_act!r} is not supported (the MLP computes silu); converting would "
            "change the model's outputs"
        )
    extra = {key: value for key, value in hf.items() if key not in MODELLED_HF_KEYS}
    eos = hf.get("eos_token_id")
    if isinstance(eos, list):
        extra["eos_token_id"] = list(eos)  # written back as it was; the first id is the primary one
        eos = eos[0] if eos else None
    return LlamaConfig(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"],
        num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        num_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
        head_dim=hf.get("head_dim"),
        rms_norm_eps=float(hf.get("rms_norm_eps", 1e-5)),
        rope_theta=float(rope_theta),
        rope_scaling=scaling,
        max_position_embeddings=hf.get("max_position_embeddings", 131072),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        bos_token_id=hf.get("bos_token_id"),
        eos_token_id=eos,
        pad_token_id=hf.get("pad_token_id"),
        extra=extra,
    )


def to_hf_dict(config: LlamaConfig, torch_dtype: str = "float32") -> dict[str, Any]:
    """A ``config.json`` mapping that the installed transformers reads back to the same model."""
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling is not None and config.rope_scaling.rope_type == "llama3":
        scaling = config.rope_scaling
        rope = {
            "rope_type": "llama3",
            "rope_theta": config.rope_theta,
            "factor": scaling.factor,
            "low_freq_factor": scaling.low_freq_factor,
            "high_freq_factor": scaling.high_freq_factor,
            "original_max_position_embeddings": scaling.original_max_position_embeddings,
        }
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.resolved_head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        "max_position_embeddings": config.max_position_embeddings,
        "tie_word_embeddings": config.tie_word_embeddings,
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
        "torch_dtype": torch_dtype,
        "dtype": torch_dtype,
        # Both spellings: transformers 5.x reads rope_parameters, 4.x reads rope_scaling + rope_theta.
        "rope_parameters": rope,
        "rope_theta": config.rope_theta,
        "rope_scaling": None if rope["rope_type"] == "default" else dict(rope),
    }
    listed_eos = config.extra.get("eos_token_id")
    if isinstance(listed_eos, list) and config.eos_token_id in listed_eos:
        hf["eos_token_id"] = list(listed_eos)
    hf.update({key: value for key, value in config.extra.items() if key not in hf})
    return hf
