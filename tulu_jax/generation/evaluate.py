"""Verifiable-reward evaluation: generate for RLVR records, score with ``tulu_jax.rewards.score``, summarise.

``evaluate`` works on in-memory params so the RLVR stage and the demo can call it without reloading. A
sample counts as correct when its score is 1. With ``n_samples`` = n > 1 samples per prompt, pass@k is
the unbiased estimator ``1 - C(n - c, k) / C(n, k)`` (c correct of n) averaged over prompts, for k = 1, the
powers of two below n, and n.

On several processes every process generates every batch together (the model is sharded over all of them)
and gets every completion back; each then verifies only its own share of the records (verifiers are plain
Python on the host, math-verify the slow one) and the scores are gathered by name, so every process returns
the same summary. A record that cannot be scored is refused on all processes with the same line.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Optional, Sequence

from jax.sharding import Mesh

from tulu_jax import distributed
from tulu_jax.errors import DataError, TuluError
from tulu_jax.generation.prompts import encode_prompt, record_messages
from tulu_jax.generation.sampling import SamplingConfig
from tulu_jax.generation.text import complete
from tulu_jax.models import LlamaConfig

RLVR_FIELDS = ("messages", "ground_truth", "dataset")


def pass_at_k(n: int, correct: int, k: int) -> float:
    """Unbiased pass@k from n samples of which ``correct`` passed (the product form avoids huge binomials)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - correct < k:
        return 1.0
    value = 1.0
    for i in range(n - correct + 1, n + 1):
        value *= 1.0 - k / i
    return 1.0 - value


def reported_ks(n: int) -> list[int]:
    ks = {1, n}
    k = 2
    while k < n:
        ks.add(k)
        k *= 2
    return sorted(ks)


def dataset_label(dataset) -> str:
    names = dataset if isinstance(dataset, (list, tuple)) else [dataset]
    return "+".join(str(name).strip().lower() for name in names)


def check_record(record: dict, where: str) -> None:
    missing = [field for field in RLVR_FIELDS if field not in record]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}; an RLVR record needs {', '.join(RLVR_FIELDS)}")


def score_generations(records: Sequence[dict], generations: Sequence[Sequence[str]], first_number: int = 1
                      ) -> list[list[float]]:
    """Scores in [0, 1] of each record's generations, through ``tulu_jax.rewards.score`` (errors number the
    records from ``first_number``)."""
    from tulu_jax import rewards

    scores = []
    for number, (record, texts) in enumerate(zip(records, generations), start=first_number):
        try:
            scores.append([rewards.score(text, record["ground_truth"], record["dataset"]) for text in texts])
        except TuluError as error:
            raise DataError(f"record {number}: {error}") from None
        except (ValueError, TypeError) as error:
            raise DataError(f"record {number}: cannot score it: {error}") from None
    return scores


def summarize(records: Sequence[dict], scores: Sequence[Sequence[float]]) -> dict:
    """``{"datasets": {label: metrics}, "all": metrics}``; metrics: count, samples, mean_score, pass@k."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[dataset_label(record["dataset"])].append(index)
    groups_with_all = {**dict(sorted(groups.items())), "all": list(range(len(records)))}
    summary: dict = {"datasets": {}}
    for label, indices in groups_with_all.items():
        n = len(scores[indices[0]]) if indices else 0
        metrics = {
            "count": len(indices),
            "samples": n,
            "mean_score": sum(sum(scores[i]) for i in indices) / max(1, n * len(indices)),
        }
        for k in reported_ks(n) if n else []:
            correct = [sum(value == 1.0 for value in scores[i]) for i in indices]
            metrics[f"pass@{k}"] = sum(pass_at_k(n, c, k) for c in correct) / len(indices)
        if label == "all":
            summary["all"] = metrics
        else:
            summary["datasets"][label] = metrics
    return summary


def evaluate(
    params,
    config: LlamaConfig,
    tokenizer,
    records: Sequence[dict],
    *,
    n_samples: int = 1,
    sampling: Optional[SamplingConfig] = None,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    mesh: Optional[Mesh] = None,
    add_bos: bool = False,
    chat_template: Optional[str] = None,
) -> dict:
    """Generate ``n_samples`` responses per record, score them, and return the summary plus the generations.

    The result is ``summarize(...)`` with ``"records"`` added: each input record with ``generations``,
    ``scores`` and ``stopped`` lists. Sampling defaults to greedy for one sample and temperature 1 otherwise.
    Prompts use ``chat_template`` (``tokenizer`` or ``tulu``; None: the tokenizer's own when it has one).
    """
    if n_samples < 1:
        raise DataError(f"n_samples must be at least 1, got {n_samples}")
    if not records:
        raise DataError("no records to evaluate")
    for number, record in enumerate(records, start=1):
        check_record(record, f"record {number}")
    if sampling is None:
        sampling = SamplingConfig(temperature=0.0 if n_samples == 1 else 1.0)
    prompts = [
        encode_prompt(tokenizer, record_messages(record, f"record {number}"), add_bos, chat_template)
        for number, record in enumerate(records, start=1)
    ]
    repeated = [prompt for prompt in prompts for _ in range(n_samples)]
    completions = complete(
        params, config, tokenizer, repeated,
        sampling=sampling, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, mesh=mesh,
    )
    per_record = [completions[i * n_samples : (i + 1) * n_samples] for i in range(len(records))]
    generations = [[completion.text for completion in group] for group in per_record]
    scores = score_shared(records, generations)
    summary = summarize(records, scores)
    summary["records"] = [
        {**record, "generations": texts, "scores": values, "stopped": [c.stopped for c in group]}
        for record, texts, values, group in zip(records, generations, scores, per_record)
    ]
    return summary


def process_share(count: int) -> range:
    """The records this process verifies: a contiguous ``1 / processes`` of them."""
    index, processes = distributed.process_index(), distributed.process_count()
    return range(count * index // processes, count * (index + 1) // processes)


def score_shared(records: Sequence[dict], generations: Sequence[Sequence[str]]) -> list[list[float]]:
    """Every record's scores on every process, each process verifying only its ``process_share``."""
    share = process_share(len(records))
    with distributed.same_verdict("eval records scored"):
        local = score_generations(records[share.start : share.stop], generations[share.start : share.stop],
                                  first_number=share.start + 1)
    # JSON keeps every float exactly; the pieces come back in process order, which is record order.
    return [row for piece in distributed.gathered("eval scores", json.dumps(local)) for row in json.loads(piece)]


def format_summary(summary: dict) -> str:
    """A table: one row per dataset and one for all, with count, mean score and every pass@k."""
    rows_data = {**summary["datasets"], "all": summary["all"]}
    pass_keys = [key for key in summary["all"] if key.startswith("pass@")]
    header = ["dataset", "count", "mean score", *pass_keys]
    rows = [header]
    for label, metrics in rows_data.items():
        rows.append([label, str(metrics["count"]), f"{metrics['mean_score']:.4f}", *(f"{metrics[k]:.4f}" for k in pass_keys)])
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    )
