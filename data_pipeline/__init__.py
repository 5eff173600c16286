"""From files on disk to device batches: sources, schema, mixtures, chat template, packing, loader, decontamination.

This package knows tokens, not models: it never imports ``tulu_jax``.
"""
