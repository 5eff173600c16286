"""The demo's bundled task family: deterministic, disjoint splits, and labels the real verifiers agree with."""

import json

from data_pipeline.demo import build_demo_data
from data_pipeline.tokenizer import load_tokenizer
from tulu_jax.rewards import score


def read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_same_seed_same_files_and_splits_are_disjoint(tmp_path):
    small = dict(sft_size=120, preference_size=60, rlvr_size=60, eval_size=40)
    first = build_demo_data(tmp_path / "a", seed=3, **small)
    second = build_demo_data(tmp_path / "b", seed=3, **small)
    for name in ("sft", "preference", "rlvr", "eval"):
        assert getattr(first, name).read_bytes() == getattr(second, name).read_bytes()
    assert (first.tokenizer / "tokenizer.json").read_bytes() == (second.tokenizer / "tokenizer.json").read_bytes()
    prompts = {
        "sft": {r["messages"][0]["content"] for r in read(first.sft)},
        "preference": {r["chosen"][0]["content"] for r in read(first.preference)},
        "rlvr": {r["messages"][0]["content"] for r in read(first.rlvr)},
        "eval": {r["messages"][0]["content"] for r in read(first.eval)},
    }
    assert [len(p) for p in prompts.values()] == [120, 60, 60, 40]
    names = list(prompts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not prompts[a] & prompts[b], (a, b)


def test_verifiers_accept_chosen_and_refuse_rejected(tmp_path):
    files = build_demo_data(tmp_path, seed=0, sft_size=50, preference_size=200, rlvr_size=10, eval_size=10)
    truths = {r["messages"][0]["content"]: (r["ground_truth"], r["dataset"]) for r in read(files.eval)}
    assert {dataset for _, dataset in truths.values()} == {"gsm8k", "ifeval"}
    pairs = read(files.preference)
    kinds = set()
    for pair in pairs:
        prompt = pair["chosen"][0]["content"]
        dataset = "gsm8k" if " has " in prompt else "ifeval"
        kinds.add(dataset)
        if dataset == "gsm8k":
            truth = pair["chosen"][1]["content"].rsplit(" ", 1)[-1].rstrip(".")
        else:
            truth = _instruction_truth(prompt)
        assert score(pair["chosen"][1]["content"], truth, dataset) == 1.0, pair
        assert score(pair["rejected"][1]["content"], truth, dataset) == 0.0, pair
    assert kinds == {"gsm8k", "ifeval"}
    tokenizer = load_tokenizer(files.tokenizer)
    assert tokenizer.eos_token == "<|end_of_text|>" and tokenizer.pad_id != tokenizer.eos_id


def _instruction_truth(prompt):
    if "lowercase" in prompt:
        return json.dumps({"func_name": "validate_lowercase"})
    if "capital" in prompt:
        return json.dumps({"func_name": "validate_uppercase"})
    phrase = prompt.split('exact phrase "')[1].rstrip('"')
    return json.dumps({"func_name": "validate_end", "end_phrase": phrase})
