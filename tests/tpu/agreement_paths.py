"""A 2-process program whose processes take different paths through their agreements, for
``test_multihost_agreements.py``: ``python -m tests.tpu.agreement_paths SCENARIO`` under the TULU_* settings.

- ``missed``: process 1 skips the barrier ``'weights staged'`` of step 3 and goes on to ``'export written'``;
- ``twice``: every process reaches ``'keep best'`` of step 5 twice.
Each process ends as the CLI ends one: a user error is one ``error:`` line, told to the others.
"""

from __future__ import annotations

import sys

from tulu_jax import distributed
from tulu_jax.distributed.watch import current_watch
from tulu_jax.errors import TuluError


def missed() -> None:
    if distributed.process_index() == 0:
        distributed.barrier("weights staged", step=3)
    distributed.barrier("export written", step=3)


def twice() -> None:
    distributed.barrier("keep best", step=5)
    distributed.barrier("keep best", step=5)


def main(scenario: str) -> int:
    distributed.initialize()
    try:
        {"missed": missed, "twice": twice}[scenario]()
    except TuluError as error:
        current_watch().report(f"error: {error}", 1)
        return 1
    distributed.finish_run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
