"""The worker behind ``time_limit.SymbolicChecker``: reads ``{"first", "second", "method"}`` lines, writes ``{"equal"}``.

``method`` names the judge: ``sympy`` (our reader, ``latex_sympy``) or ``math_verify`` (HF math-verify's
LaTeX reader, ``math_verify_judge``). Neither executes its input.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    # Replies go to the real stdout only; anything a library prints goes to stderr, so no stray line
    # can be read as a reply.
    replies, sys.stdout = sys.stdout, sys.stderr
    from tulu_jax.rewards.latex_sympy import expressions_equal
    from tulu_jax.rewards.math_verify_judge import math_verify_equal

    judges = {"sympy": expressions_equal, "math_verify": math_verify_equal}
    # Import and warm both judges before "ready", so start-up is never charged to a check's time limit
    # (a check cut off while importing would restart the worker into the same import, every time).
    for judge in judges.values():
        try:
            judge("1", "1")
        except Exception:  # a missing math-verify only turns that judge off ("not shown equal")
            pass
    print("ready", file=replies, flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            judge = judges[request.get("method", "sympy")]
            equal = judge(str(request["first"]), str(request["second"]))
        except Exception:  # any failure on model text means "not shown equal"
            equal = False
        print(json.dumps({"equal": bool(equal)}), file=replies, flush=True)


if __name__ == "__main__":
    main()
