"""Every row is scored in bounded time, and a row without a label is refused (issue 28 findings 4, 8, 9).

- IFEval's sentence split reads the token before each period from a bounded window: 100 kB in well under a
  second (it was quadratic: 21 s, and 40.8 s for ``number_sentences``);
- a MATH answer's symbolic checks share one time budget (``ANSWER_SECONDS``), not one limit each (a 17-element
  set whose every check ran out took 40 s);
- an empty or null ground truth is an error naming the file and line in ``tulu-jax verify`` (it scored 1.0).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tulu_jax import rewards
from tulu_jax.rewards import math_answer
from tulu_jax.rewards.ifeval_google import GOOGLE_CHECKS
from tulu_jax.rewards.math_equivalence import ANSWER_SECONDS
from tulu_jax.rewards.text_units import sentences

HUNDRED_KB = ("Dr. Smith met J. R. R. Tolkien at 3.5 p.m. on Jan. 5. They talked, e.g. about maps! " * 1200)[:100_000]


def test_sentences_of_100_kb_are_split_in_linear_time():
    started = time.monotonic()
    found = sentences(HUNDRED_KB)
    assert time.monotonic() - started < 1.0
    assert found[0] == "Dr. Smith met J. R. R. Tolkien at 3.5 p.m. on Jan. 5."
    assert found[1] == "They talked, e.g. about maps!"


def test_the_number_sentences_check_of_100_kb_is_quick():
    started = time.monotonic()
    GOOGLE_CHECKS["length_constraints:number_sentences"](HUNDRED_KB, num_sentences=3, relation="at least")
    assert time.monotonic() - started < 1.0


class _CheckerThatAlwaysRunsOut:
    """A symbolic checker whose every check takes all the time it is given, and proves nothing."""

    def __init__(self, limit: float = 2.0):
        self.limit, self.calls = limit, 0

    def equal(self, first, second, method="sympy", seconds=None):
        self.calls += 1
        time.sleep(self.limit if seconds is None else min(seconds, self.limit))
        return False


def test_a_17_element_set_whose_every_check_runs_out_costs_one_answer_budget():
    checker = _CheckerThatAlwaysRunsOut()
    answer = r"\{" + ", ".join(f"x^{{{i}}}+\\sin(x)" for i in range(17)) + r"\}"
    label = r"\{" + ", ".join(f"\\sin(x)+x^{{{i + 1}}}" for i in range(17)) + r"\}"
    started = time.monotonic()
    assert not math_answer.answers_equivalent(answer, label, checker=checker)
    assert checker.calls >= 1
    assert time.monotonic() - started < ANSWER_SECONDS + 0.5  # was one 2 s limit per check, 16 of them


@pytest.mark.parametrize("dataset, ground_truth", [("gsm8k", ""), ("math", ""), ("math", None), ("math", "  ")])
def test_an_empty_or_null_ground_truth_is_refused(dataset, ground_truth):
    with pytest.raises(ValueError, match="ground truth"):
        rewards.score(r"\boxed{}", ground_truth, dataset)


def test_verify_names_the_line_of_an_empty_ground_truth(tmp_path):
    rows = [{"response": "#### 4", "ground_truth": "4", "dataset": "gsm8k"},
            {"response": "", "ground_truth": "", "dataset": "gsm8k"}]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = subprocess.run([sys.executable, "-m", "tulu_jax.cli", "verify", "--input", str(source), "--out",
                           str(tmp_path / "scored.jsonl")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert f"{source}:2:" in done.stderr and "ground truth for 'gsm8k' is empty" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "scored.jsonl").exists()
