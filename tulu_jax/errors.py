"""Errors a user can cause. The CLI prints them without a traceback (``--debug`` shows one)."""

from data_pipeline.errors import DataError, UserError

TuluError = UserError

__all__ = ["TuluError", "DataError", "ConfigError", "CheckpointError", "MeshError", "DistributedError"]


class ConfigError(TuluError):
    """A configuration key or value is wrong."""


class CheckpointError(TuluError):
    """A checkpoint or model directory is missing, incomplete or of the wrong kind."""


class MeshError(TuluError):
    """The requested device mesh does not fit the devices or the model."""


class DistributedError(TuluError):
    """The processes of a multi-host run could not join, disagree, or lost one another."""
