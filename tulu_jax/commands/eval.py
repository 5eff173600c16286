"""``tulu-jax eval``: generate for RLVR records, verify with the reward functions, report accuracy per dataset.

Data lines are RLVR records (``messages``, ``ground_truth``, ``dataset``). Prints pass@1 (and unbiased
pass@k when ``--n-samples`` > 1) per dataset; writes each record with its ``generations``, ``scores`` and
``stopped`` flags to ``--out`` (default: beside the data, ``<data>.generations.jsonl``). Every location may be a
URL (``gs://…``). On a pod every process runs the same command: the model is read sharded over all devices
(each process reads its own slices), each process verifies its share of the records, and process 0 writes the
file, the same as one process writes.
"""

from __future__ import annotations

from tulu_jax.errors import ConfigError

NAME = "eval"
USES_DEVICES = True
HELP = "evaluate a checkpoint on RLVR records with the verifiable-reward functions (pass@1, pass@k)"


def add_arguments(parser) -> None:
    from tulu_jax.generation.cli_options import add_model_and_sampling_arguments

    parser.add_argument("--data", required=True, help="JSONL of RLVR records (messages, ground_truth, dataset); a path or gs:// URL")
    parser.add_argument("--n-samples", type=int, default=1, help="samples per prompt; > 1 reports pass@k (default 1)")
    parser.add_argument("--out", help="JSONL of generations (default <data>.generations.jsonl); a path or gs:// URL")
    add_model_and_sampling_arguments(
        parser, max_new_tokens=512, temperature_help="default 0 (greedy) for one sample, 1.0 for several"
    )


def default_out(data: str) -> str:
    from data_pipeline.paths import as_path

    path = as_path(data)
    return str(path.with_name(path.stem + ".generations.jsonl"))


def run(args) -> int:
    import json

    from tulu_jax import distributed
    from tulu_jax.generation.cli_options import inference_mesh_and_batch, load_checked, sampling_from_args
    from tulu_jax.generation.evaluate import check_record, evaluate, format_summary
    from tulu_jax.jsonl import read_jsonl, refuse_overwriting_inputs, write_jsonl

    out = args.out or default_out(args.data)
    with distributed.same_verdict("eval inputs"):  # every process refuses bad inputs with the same line
        if args.n_samples < 1 or args.batch_size < 1 or args.max_new_tokens < 1:
            raise ConfigError("--n-samples, --batch-size and --max-new-tokens must be positive")
        refuse_overwriting_inputs(out, [("--data file", args.data), ("--checkpoint", args.checkpoint)])
        entries = read_jsonl(args.data)
        for where, record in entries:
            check_record(record, where)  # fail on bad data before loading the model
    sampling = sampling_from_args(args, default_temperature=0.0 if args.n_samples == 1 else 1.0)
    mesh, batch_size = inference_mesh_and_batch(args.batch_size)
    model = load_checked(args, mesh)
    result = evaluate(
        model.params, model.config, model.tokenizer, [record for _, record in entries],
        n_samples=args.n_samples, sampling=sampling, max_new_tokens=args.max_new_tokens,
        batch_size=batch_size, seed=args.seed, mesh=mesh, add_bos=args.add_bos,
        chat_template=args.chat_template,
    )
    if not distributed.is_primary():
        return 0
    write_jsonl(out, result["records"])
    print(format_summary(result))
    summary = {key: value for key, value in result.items() if key != "records"}
    print(json.dumps(summary))
    print(f"wrote {len(result['records'])} records with generations to {out}")
    return 0
