"""HF ``math-verify`` as an equivalence judge of two LaTeX answers; runs only inside the symbolic worker.

Only math-verify's LaTeX reader is used (an ANTLR grammar that builds sympy objects). Its plain-expression
reader is never used: that one calls ``sympy.parse_expr``, which evaluates Python, and model text is
never executed. Its own ``signal.alarm`` timeouts are off; the worker process is killed instead
(``time_limit``), which also stops work stuck in C code where no signal reaches.
"""

from __future__ import annotations


def math_verify_equal(answer: str, label: str) -> bool:
    """True when math-verify reads both as LaTeX and finds them equal (``answer`` may not be a superset)."""
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig()]
    gold = parse("$" + label + "$", extraction_config=config, parsing_timeout=None)
    predicted = parse("$" + answer + "$", extraction_config=config, parsing_timeout=None)
    if not gold or not predicted:
        return False
    return bool(verify(gold, predicted, timeout_seconds=None))
