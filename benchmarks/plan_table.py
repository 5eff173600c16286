"""Former name of ``benchmarks.plan_tables`` (every stage now, not only SFT): ``python -m benchmarks.plan_table``
runs the same rows."""

from __future__ import annotations

import sys

from benchmarks.plan_tables import main

if __name__ == "__main__":
    sys.exit(main())
