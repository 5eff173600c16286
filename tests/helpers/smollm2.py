"""The real-model fixture lives in ``benchmarks/smollm2.py`` (the benchmarks use it too, and never import
tests); this name stays for the real-model tests and ``python -m tests.helpers.smollm2`` (the Makefile)."""

from benchmarks.smollm2 import FixtureUnavailable, cache_root, ensure_model, model_dir  # noqa: F401

if __name__ == "__main__":
    from benchmarks.smollm2 import main

    main()
