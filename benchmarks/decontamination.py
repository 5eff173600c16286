"""Training-side throughput of 8-gram decontamination: ours (NumPy hashes, 1 and 2 threads) vs a plain Python set-of-tuples scan.

    python -m benchmarks.decontamination [--instances N] [--quick]

A seeded synthetic corpus (prompts of 30-60 words drawn Zipf-like from a 20k-word vocabulary,
with capitals and punctuation) is scanned against a ~15k-prompt eval set, a few hundred eval
prompts being planted into training. Both implementations apply the same rule and must find
the same overlaps on the subsample the plain one runs on.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from data_pipeline.decontaminate import EvalIndex, find_overlaps, words

VOCABULARY_SIZE = 20_000
EVAL_INSTANCES = 15_000
PLANTED = 300
TULU_SFT_PROMPTS = 939_344  # Tülu 3 SFT mixture
REFERENCE_EVAL_PROMPTS = 1_319 + 5_000 + 541  # GSM8K test + MATH test + IFEval


def synthetic_prompts(count: int, seed: int) -> list[str]:
    """``count`` prompts of 30-60 words from a Zipf-like vocabulary, deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = np.array(sorted({"".join(rng.choice(letters, size=rng.integers(2, 10))) for _ in range(int(VOCABULARY_SIZE * 1.2))})[:VOCABULARY_SIZE])
    rng.shuffle(vocabulary)
    frequency = 1.0 / np.arange(1, len(vocabulary) + 1) ** 1.05
    decorated = np.array([w.capitalize() for w in vocabulary]), np.array([w + "," for w in vocabulary])
    lengths = rng.integers(30, 61, size=count)
    ids = rng.choice(len(vocabulary), size=int(lengths.sum()), p=frequency / frequency.sum())
    style = rng.random(len(ids))
    tokens = np.where(style < 0.05, decorated[0][ids], np.where(style < 0.12, decorated[1][ids], vocabulary[ids]))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [" ".join(tokens[bounds[i] : bounds[i + 1]]) + "?" for i in range(count)]


def plain_python_index(evals: list[str], n: int = 8) -> tuple[list[list[str]], dict]:
    """The straightforward eval side: words per prompt and a dict from n-gram tuple to (instance, position)."""
    eval_words = [words(text) for text in evals]
    postings: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for instance, tokens in enumerate(eval_words):
        for position in range(len(tokens) - n + 1):
            postings.setdefault(tuple(tokens[position : position + n]), []).append((instance, position))
    return eval_words, postings


def plain_python_overlaps(train: list[str], eval_words, postings, n: int = 8, threshold: float = 0.5) -> set[tuple[int, int]]:
    """The straightforward training scan: a set of n-gram tuples per prompt, looked up in the eval dict."""
    found = set()
    for train_id, text in enumerate(train):
        tokens = words(text)
        covered: dict[int, set[int]] = {}
        for gram in {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}:
            for instance, position in postings.get(gram, ()):
                covered.setdefault(instance, set()).update(range(position, position + n))
        for instance, matched in covered.items():
            if len(matched) > threshold * len(eval_words[instance]):
                found.add((train_id, instance))
    return found


def run(quick: bool = False, instances: int | None = None, seed: int = 0, rounds: int = 3) -> dict:
    """Measure both implementations; returns the figures (tokens/s, ratios, projection) as a dict.

    Rounds alternate ours (one thread, then two) and the plain scan; each figure is the median.
    """
    instances = instances or (100_000 if quick else 1_000_000)
    plain_instances = min(instances, 5_000 if quick else 30_000)
    rng = np.random.default_rng(seed + 1)
    evals = synthetic_prompts(EVAL_INSTANCES, seed=seed + 2)
    train = synthetic_prompts(instances, seed=seed)
    planted_at = rng.choice(instances, size=PLANTED, replace=False)
    planted_eval = rng.choice(EVAL_INSTANCES, size=PLANTED, replace=False)
    for at, eval_instance in zip(planted_at, planted_eval):
        train[at] = "Please answer: " + evals[eval_instance]
    train_tokens = sum(len(text.split()) for text in train)  # the synthetic words are whitespace-separated
    subsample = train[:plain_instances]
    subsample_tokens = sum(len(text.split()) for text in subsample)

    start = time.perf_counter()
    index = EvalIndex(evals)
    index_seconds = time.perf_counter() - start
    eval_words, postings = plain_python_index(evals)
    seconds: dict[str, list[float]] = {"one_thread": [], "two_threads": [], "plain": []}
    found: dict[str, set] = {}
    for _ in range(rounds):
        for name, workers in (("one_thread", 1), ("two_threads", 2)):
            start = time.perf_counter()
            found[name] = {(o.train_id, o.eval_instance) for o in find_overlaps(enumerate(train), index, workers=workers)}
            seconds[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        plain = plain_python_overlaps(subsample, eval_words, postings)
        seconds["plain"].append(time.perf_counter() - start)
    ours = found["one_thread"]
    if found["two_threads"] != ours:
        raise AssertionError("one and two hashing threads found different overlaps")
    ours_on_subsample = {pair for pair in ours if pair[0] < plain_instances}
    if plain != ours_on_subsample:
        raise AssertionError(f"implementations disagree: {len(plain)} vs {len(ours_on_subsample)} overlaps")
    if not {(int(a), int(e)) for a, e in zip(planted_at, planted_eval)} <= ours:
        raise AssertionError("a planted eval prompt was not found")

    one_rate = train_tokens / statistics.median(seconds["one_thread"])
    two_rate = train_tokens / statistics.median(seconds["two_threads"])
    plain_rate = subsample_tokens / statistics.median(seconds["plain"])
    mean_words = train_tokens / instances
    return {
        "train_instances": instances,
        "train_tokens": train_tokens,
        "eval_instances": EVAL_INSTANCES,
        "overlaps_found": len(ours),
        "index_seconds": index_seconds,
        "rounds": rounds,
        "ours_seconds_one_thread": seconds["one_thread"],
        "ours_seconds_two_threads": seconds["two_threads"],
        "ours_tokens_per_second_one_thread": one_rate,
        "ours_tokens_per_second": two_rate,
        "plain_instances": plain_instances,
        "plain_seconds": seconds["plain"],
        "plain_tokens_per_second": plain_rate,
        "ratio_one_thread": one_rate / plain_rate,
        "ratio": two_rate / plain_rate,
        # The scan cost grows with training tokens; the eval side only sizes the in-memory index.
        "projected_tulu_sft_seconds_ours": TULU_SFT_PROMPTS * mean_words / two_rate,
        "projected_tulu_sft_seconds_plain": TULU_SFT_PROMPTS * mean_words / plain_rate,
        "projection_assumes_words_per_prompt": mean_words,
    }


def print_table(result: dict) -> None:
    print(f"training: {result['train_instances']:,} prompts, {result['train_tokens']:,} words; "
          f"eval: {result['eval_instances']:,} prompts; overlaps found: {result['overlaps_found']}")
    print(f"{'implementation':<32} {'prompts':>10} {'seconds':>9} {'words/s':>14}")
    rows = (("numpy hashes, 1 thread (ours)", result["train_instances"], result["ours_seconds_one_thread"],
             result["ours_tokens_per_second_one_thread"]),
            ("numpy hashes, 2 threads (ours)", result["train_instances"], result["ours_seconds_two_threads"],
             result["ours_tokens_per_second"]),
            ("python set of tuples", result["plain_instances"], result["plain_seconds"], result["plain_tokens_per_second"]))
    for name, prompts, seconds, rate in rows:
        print(f"{name:<32} {prompts:>10,} {statistics.median(seconds):>9.2f} {rate:>14,.0f}")
    print(f"ratio: {result['ratio']:.1f}x with 2 threads, {result['ratio_one_thread']:.1f}x with 1 "
          f"(medians of {result['rounds']} rounds; eval index built in {result['index_seconds']:.2f} s)")
    print(f"projection, {TULU_SFT_PROMPTS:,} Tülu SFT prompts of {result['projection_assumes_words_per_prompt']:.0f} words "
          f"vs a GSM8K+MATH+IFEval-sized eval set ({REFERENCE_EVAL_PROMPTS:,} prompts): "
          f"ours {result['projected_tulu_sft_seconds_ours']:.0f} s, plain Python {result['projected_tulu_sft_seconds_plain']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=None, help="training prompts (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a smaller corpus for a fast look")
    args = parser.parse_args()
    print_table(run(quick=args.quick, instances=args.instances))


if __name__ == "__main__":
    main()
