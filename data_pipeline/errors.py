"""The data errors a user can cause; ``tulu_jax.errors`` re-exports them so the CLI reports them cleanly."""


class UserError(Exception):
    """Base class: something the user can fix. The message says what, where, and how."""


class DataError(UserError):
    """Input data is malformed, missing, or empty after filtering (the message names file and line)."""
