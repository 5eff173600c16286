"""Kept for one release for the importers outside ``stages/`` (``planning/target.py``, ``benchmarks/``): the model
source's names now live in ``stages.model_source``; import them from there."""

from tulu_jax.stages.model_source import POLICY_FIELDS, ModelConfig, resolve_model_config

__all__ = ["POLICY_FIELDS", "ModelConfig", "resolve_model_config"]
