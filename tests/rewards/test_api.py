"""The public reward API: registry, score/reward arithmetic, response extraction, no JAX import."""

import subprocess
import sys

import pytest

from tulu_jax import rewards


def test_builtin_verifiers_are_registered_case_insensitively():
    assert {"gsm8k", "math", "ifeval"} <= set(rewards.registered_datasets())
    assert rewards.score(r"\boxed{4}", "4", "MATH") == 1.0


def test_unknown_dataset_lists_registered_ones():
    with pytest.raises(rewards.UnknownDatasetError, match="gsm8k, gsm8k_reference, ifeval, math"):
        rewards.score("x", "1", "poetry")


def test_users_can_register_and_replace_verifiers():
    @rewards.register_verifier("exact_match_test")
    def exact(response, ground_truth):
        return float(response.strip() == ground_truth)

    try:
        assert rewards.score(" yes ", "yes", "exact_match_test") == 1.0
        with pytest.raises(ValueError, match="already registered"):
            rewards.register_verifier("exact_match_test", lambda response, truth: 0.0)
        rewards.register_verifier("exact_match_test", lambda response, truth: 2.0, replace=True)
        with pytest.raises(ValueError, match="outside"):
            rewards.score("yes", "yes", "exact_match_test")
    finally:
        rewards.unregister_verifier("exact_match_test")


def test_reward_is_alpha_times_score_and_nonstop_penalty_replaces_it():
    assert rewards.reward("The answer is 5.", "5", "gsm8k") == 10.0
    assert rewards.reward("The answer is 5.", "5", "gsm8k", alpha=3.0) == 3.0
    assert rewards.reward("The answer is 4.", "5", "gsm8k") == 0.0
    assert rewards.reward("The answer is 5.", "5", "gsm8k", stopped=False) == 10.0  # no penalty configured
    assert rewards.reward("The answer is 5.", "5", "gsm8k", stopped=False, nonstop_penalty=-10.0) == -10.0


def test_list_datasets_average_their_parts():
    assert rewards.score("The answer is 5", ["5", "6"], ["gsm8k", "gsm8k"]) == 0.5
    with pytest.raises(ValueError, match="pair up"):
        rewards.score("5", ["5"], ["gsm8k", "math"])


def test_extract_response_takes_text_after_last_assistant_marker():
    text = "<|user|>\nQ1\n<|assistant|>\nA1<|end_of_text|>\n<|user|>\nQ2\n<|assistant|>\n  The answer is 7.  "
    assert rewards.extract_response(text) == "The answer is 7."
    assert rewards.extract_response("  plain  ") == "plain"


def test_rewards_never_import_jax():
    code = "import sys, tulu_jax.rewards, tulu_jax.commands.verify; print('jax' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "False"
