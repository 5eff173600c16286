"""The toy RLVR task lives in ``benchmarks/rlvr_toy_task.py`` (the RLVR benchmark runs it too, and
benchmarks never import tests); the stage tests keep importing it by this name."""

from benchmarks.rlvr_toy_task import (  # noqa: F401
    ANSWER, EOS, PAD, TOY_MODEL_OVERRIDES, ToyTokenizer, toy_model_config, toy_prompts,
)
