"""Errors a user can cause. The CLI prints them without a traceback (``--debug`` shows one)."""

from data_pipeline.errors import DataError, UserError

TuluError = UserError

__all__ = ["TuluError", "DataError", "ConfigError", "CheckpointError", "MeshError"]


class ConfigError(TuluError):
    """A configuration key or value is wrong."""


class CheckpointError(TuluError):
    """A checkpoint or model directory is missing, incomplete or of the wrong kind."""


class MeshError(TuluError):
    """The requested device mesh does not fit the devices or the model."""
