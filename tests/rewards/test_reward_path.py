"""The fixes reach training: ``tulu-jax verify`` and the RLVR rollout scorer call the same verifier functions.

Each case below was judged wrongly before issue 21 (a false accept, a false reject, the IFEval paragraph
split) or crashed before issue 23 (a number of more than 4,300 digits).
"""

import json

import numpy as np

from tulu_jax import cli
from tulu_jax.stages.rlvr.rollout import score_responses

PARAGRAPH_TRUTH = json.dumps({"instruction_id_list": ["length_constraints:number_paragraphs"], "kwargs": [{"num_paragraphs": 1}]})
CASES = [  # (response, ground truth, dataset, score)
    (r"So $\boxed{1,2}$.", "12", "math", 0.0),  # a list is not twelve (was accepted)
    (r"So $\boxed{3\frac{1}{2}}$.", r"\frac{3}{2}", "math", 0.0),  # a mixed number is 7/2 (was accepted)
    (r"So $\boxed{x = 3, y = 5}$.", "5", "MATH", 0.0),  # two values are not one (was accepted)
    (r"So $\boxed{3, 2, 1}$.", "1, 2, 3", "math", 1.0),  # any order (was rejected)
    (r"So $\boxed{\pm 2}$.", "2, -2", "math", 1.0),  # both signs (was rejected)
    (r"So $\boxed{12 \text{ cm}^2}$.", "12", "math", 1.0),  # a unit (was rejected)
    (r"So $\boxed{4!}$.", "24", "math", 1.0),  # a factorial (was rejected)
    ("The plan has **two** **parts** today.", PARAGRAPH_TRUTH, "ifeval", 1.0),  # one paragraph (was two)
    ("9" * 5000, "1", "gsm8k", 0.0),  # a huge number (raised ValueError)
]


def test_rollout_scorer_uses_the_fixed_verifiers():
    texts, truths, datasets, expected = zip(*CASES)
    scores = score_responses(list(texts), list(truths), list(datasets))
    np.testing.assert_array_equal(scores, np.asarray(expected, np.float32))


def test_verify_command_uses_the_fixed_verifiers(tmp_path):
    source = tmp_path / "responses.jsonl"
    source.write_text("".join(
        json.dumps({"response": response, "ground_truth": truth, "dataset": dataset}) + "\n"
        for response, truth, dataset, _ in CASES
    ))
    target = tmp_path / "scored.jsonl"
    assert cli.main(["verify", "--input", str(source), "--out", str(target)]) == 0
    scores = [json.loads(line)["score"] for line in target.read_text().splitlines()]
    assert scores == [expected for *_, expected in CASES]
