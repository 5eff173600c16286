"""The worker behind ``time_limit.SymbolicChecker``: reads ``{"first", "second"}`` lines, writes ``{"equal"}``."""

from __future__ import annotations

import json
import sys


def main() -> None:
    from tulu_jax.rewards.latex_sympy import expressions_equal

    print("ready", flush=True)
    for line in sys.stdin:
        try:
            request = json.loads(line)
            equal = expressions_equal(str(request["first"]), str(request["second"]))
        except Exception:  # any failure on model text means "not shown equal"
            equal = False
        print(json.dumps({"equal": bool(equal)}), flush=True)


if __name__ == "__main__":
    main()
