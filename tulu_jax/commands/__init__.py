"""Subcommands of the ``tulu-jax`` CLI, discovered by ``tulu_jax.cli``."""
